"""``merge`` and ``apply`` on every family: bit-identical to PEFT's merge_and_unload, logits equal to PEFT's.

MoE families carry LoRAs on the experts' fused weights (PEFT ``target_parameters``), which lorakit
splits into one LoRA per expert tensor of the checkpoint; the check is still bit-identity with PEFT.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest_families import families_root, family_dirs, one_thread  # noqa: F401  (fixtures)
from family_models import FAMILIES, MOE
from safetensors.torch import load_file

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "The quick brown fox jumps over the lazy dog. Paris is the capital of France."


def _peft(base, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(adapter)).eval()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_merge_is_bit_identical_to_peft(family, families_root, run_cli, tmp_path):
    dirs = family_dirs(family, families_root)
    out = tmp_path / "merged"
    code, stdout, err = run_cli("merge", str(dirs.base), "--lora", str(dirs.lora), "--output", str(out), "--dtype", "fp32", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["verification"]["within_tolerance"] and report["verification"]["argmax_agreement"] == 1.0
    reference = tmp_path / "peft-merged"
    _peft(dirs.base, dirs.lora).merge_and_unload().save_pretrained(reference)
    ours, theirs = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert set(ours) == set(theirs)
    changed = [name for name in theirs if not torch.equal(ours[name], theirs[name])]
    assert changed == []
    if family in MOE:  # every expert tensor of every layer really moved
        base = load_file(dirs.base / "model.safetensors")
        experts = [name for name in base if ".experts." in name]
        assert experts and all(not torch.equal(base[name], ours[name]) for name in experts)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_apply_matches_peft_logits(family, families_root):
    from lorakit.api import LoadOptions
    from lorakit.inference.planning import open_session

    dirs = family_dirs(family, families_root)
    session, _ = open_session(str(dirs.base), [str(dirs.lora)], options=LoadOptions(cpu=True), quiet=True)
    ids = session.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    ours = session.forward_logits(ids)
    with torch.no_grad():
        theirs = _peft(dirs.base, dirs.lora)(input_ids=ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-5
    with session.only([]):
        assert (session.forward_logits(ids) - ours).abs().max().item() > 1e-3  # the LoRA changes the output


@pytest.mark.parametrize("family", [name for name in FAMILIES if name != "llama"])
def test_state_dict_layout_refuses_other_families(family, families_root, run_cli, tmp_path):
    dirs = family_dirs(family, families_root)
    code, _, err = run_cli("merge", str(dirs.base), "--lora", str(dirs.attention_lora), "--format", "state_dict", "--output", str(tmp_path / "meta"))
    assert code == 1 and err.startswith("Error: ") and err.count("\n") <= 2
    assert "Meta's LLaMA layout" in err and "ForCausalLM" in err and not (tmp_path / "meta").exists()
