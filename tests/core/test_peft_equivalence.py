"""lorakit's numbers equal PEFT's: one adapter, two weighted adapters (of different ranks)."""

import pytest
import torch

from lorakit.api import LoadOptions
from lorakit.inference.planning import open_session

PROMPT = "The quick brown fox jumps over the lazy dog"


def _ids(session):
    return session.tokenizer(PROMPT, return_tensors="pt")["input_ids"]


def test_one_adapter_matches_peft(tiny_model_dir, tiny_adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    session, _ = open_session(str(tiny_model_dir), [str(tiny_adapter_dir)], options=LoadOptions(cpu=True), quiet=True)
    ids = _ids(session)
    ours = session.forward_logits(ids)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, tiny_adapter_dir).eval()
    with torch.no_grad():
        theirs = reference(input_ids=ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-5
    with session.only([]):
        bare = session.forward_logits(ids)
    assert (bare - ours).abs().max().item() > 1e-3  # the adapter really changes the output


@pytest.mark.parametrize("w1,w2", [(1.0, 1.0), (0.7, -0.4)])
def test_two_weighted_adapters_match_peft_cat(tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, w1, w2):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    specs = [f"{tiny_adapter_dir}:{w1}", f"{tiny_adapter2_dir}:{w2}"]
    session, _ = open_session(str(tiny_model_dir), specs, options=LoadOptions(cpu=True), quiet=True)
    ids = _ids(session)
    ours = session.forward_logits(ids)

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, tiny_adapter_dir, adapter_name="one")
    reference.load_adapter(tiny_adapter2_dir, adapter_name="two")
    reference.add_weighted_adapter(["one", "two"], [w1, w2], adapter_name="mix", combination_type="cat")
    reference.set_adapter("mix")
    with torch.no_grad():
        theirs = reference.eval()(input_ids=ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_set_weight_and_fast_removal_restore_the_base(tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir):
    session, _ = open_session(str(tiny_model_dir), options=LoadOptions(cpu=True), quiet=True)
    ids = _ids(session)
    bare = session.forward_logits(ids)
    session.add_lora("a1", tiny_adapter_dir, 1.0)
    session.add_lora("a2", tiny_adapter2_dir, 0.5)
    both = session.forward_logits(ids)
    session.set_weight("a2", 0.0)
    only_first = session.forward_logits(ids)
    with session.only(["a1"]):
        assert (session.forward_logits(ids) - only_first).abs().max().item() <= 1e-6
    report = session.remove_lora("a1")
    assert "not reloaded" in report.detail
    session.remove_lora("a2")
    assert (session.forward_logits(ids) - bare).abs().max().item() == 0.0
    assert (both - bare).abs().max().item() > 1e-3


def _peft_reference(base_dir, adapters, ids):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, adapters[0][0], adapter_name="n0")
    for index, (path, _) in enumerate(adapters[1:], 1):
        reference.load_adapter(path, adapter_name=f"n{index}")
    names = [f"n{i}" for i in range(len(adapters))]
    reference.base_model.set_adapter(names)
    for module in reference.modules():
        if hasattr(module, "set_scale"):
            for name, (_, weight) in zip(names, adapters):
                module.set_scale(name, weight)
    with torch.no_grad():
        return reference.eval()(input_ids=ids).logits


def test_merged_and_peft_paths_agree_and_switch_when_needed(tiny_model_dir, tiny_adapter_dir, tmp_path, monkeypatch):
    """Plain LoRAs are folded into the weights; a DoRA adapter moves everything onto PEFT's path."""
    from lorakit_testing import make_peft_adapter

    dora = make_peft_adapter(tiny_model_dir, tmp_path / "dora", seed=5, targets=("v_proj", "up_proj"), use_dora=True)
    session, _ = open_session(str(tiny_model_dir), [f"{tiny_adapter_dir}:0.6"], options=LoadOptions(cpu=True), quiet=True)
    ids = _ids(session)
    assert session.merged is not None and session.peft is None
    merged_logits = session.forward_logits(ids)
    assert (merged_logits - _peft_reference(tiny_model_dir, [(tiny_adapter_dir, 0.6)], ids)).abs().max().item() <= 1e-5

    session.add_lora("dora", dora, 1.0)
    assert session.peft is not None and not session.merged
    both = session.forward_logits(ids)
    assert (both - _peft_reference(tiny_model_dir, [(tiny_adapter_dir, 0.6), (dora, 1.0)], ids)).abs().max().item() <= 1e-5

    monkeypatch.setenv("LORAKIT_PEFT_INFERENCE", "1")
    unmerged, _ = open_session(str(tiny_model_dir), [f"{tiny_adapter_dir}:0.6"], options=LoadOptions(cpu=True), quiet=True)
    assert unmerged.peft is not None
    assert (unmerged.forward_logits(ids) - merged_logits).abs().max().item() <= 1e-5
