"""Inference LoRAs are folded lazily: changes are bookkeeping, the next forward folds, undo is exact."""

import torch

from lorakit.api import LoadOptions
from lorakit.inference.planning import open_session

PROMPT = "The quick brown fox jumps over the lazy dog"


def _q_weight(session):
    return session.base.model.layers[0].self_attn.q_proj.weight


def _open(tiny_model_dir):
    session, _ = open_session(str(tiny_model_dir), options=LoadOptions(cpu=True), quiet=True)
    return session, session.tokenizer(PROMPT, return_tensors="pt")["input_ids"]


def test_attach_and_detach_touch_no_weight_until_a_forward(tiny_model_dir, tiny_adapter_dir):
    session, ids = _open(tiny_model_dir)
    base_logits = session.forward_logits(ids)
    base_tensor = _q_weight(session).data
    base_ptr = base_tensor.data_ptr()
    snapshot = base_tensor.clone()

    session.add_lora("a", tiny_adapter_dir)
    assert session.merged.pending and _q_weight(session).data_ptr() == base_ptr
    session.remove_lora("a")
    assert not session.merged.pending and _q_weight(session).data_ptr() == base_ptr
    assert torch.equal(session.forward_logits(ids), base_logits)

    session.add_lora("a", tiny_adapter_dir)
    attached = session.forward_logits(ids)  # the forward pre-hook folds first
    assert not session.merged.pending
    assert _q_weight(session).data_ptr() != base_ptr and (attached - base_logits).abs().max().item() > 1e-3
    assert torch.equal(base_tensor, snapshot)  # on the CPU the base tensor itself is never written

    session.remove_lora("a")
    assert torch.equal(session.forward_logits(ids), base_logits)  # bit for bit
    assert _q_weight(session).data_ptr() == base_ptr


def test_a_burst_of_changes_folds_once_and_only_changed_layers(tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, monkeypatch):
    from lorakit.loaders.folding import MergedLoras

    session, ids = _open(tiny_model_dir)
    folds = []
    original_fold = MergedLoras._fold
    monkeypatch.setattr(MergedLoras, "_fold", lambda self, name, weight, wanted, deltas: (folds.append(name), original_fold(self, name, weight, wanted, deltas)))

    session.add_lora("a", tiny_adapter_dir)
    session.add_lora("b", tiny_adapter2_dir, 0.5)
    session.set_weight("a", 0.7)
    session.set_weight("a", 0.3)
    assert folds == []
    both = session.forward_logits(ids)
    layers_a = set(session.merged.adapters["a"].factors)
    layers_b = set(session.merged.adapters["b"].factors)
    assert sorted(folds) == sorted(layers_a | layers_b)  # each layer once, whatever the number of changes

    folds.clear()
    session.set_weight("b", 0.25)
    session.forward_logits(ids)
    assert set(folds) == layers_b  # a layer only A touches keeps its fold

    folds.clear()
    session.forward_logits(ids)
    assert folds == []  # nothing pending, nothing folded, no hook left behind
    assert not any(module._forward_pre_hooks for module in session.base.modules())
    assert (both - session.forward_logits(ids)).abs().max().item() > 0  # B's weight did change


def test_generation_folds_and_matches_an_eager_session(tiny_model_dir, tiny_adapter_dir):
    from lorakit.inference.generation import SamplingSettings as GenerationSettings

    settings = GenerationSettings(max_new_tokens=8, greedy=True)
    lazy, ids = _open(tiny_model_dir)
    lazy.add_lora("a", tiny_adapter_dir)
    eager, _ = _open(tiny_model_dir)
    eager.add_lora("a", tiny_adapter_dir)
    eager.merged.sync()
    with torch.inference_mode():  # a fold triggered in inference mode leaves ordinary tensors behind
        assert torch.equal(lazy.generate_ids(ids, settings), eager.generate_ids(ids, settings))
    assert not _q_weight(lazy).data.is_inference()


def test_compare_turns_reuse_the_folded_weights(tiny_model_dir, tiny_adapter_dir, monkeypatch):
    session, ids = _open(tiny_model_dir)
    session.add_lora("a", tiny_adapter_dir)
    with_lora = session.forward_logits(ids)
    calls = []
    real_addmm = torch.addmm
    monkeypatch.setattr(torch, "addmm", lambda *args, **kwargs: (calls.append(1), real_addmm(*args, **kwargs))[1])
    for _ in range(2):  # what --compare does: the base's turn, then the LoRA's
        with session.only([]):
            base = session.forward_logits(ids)
        assert torch.equal(session.forward_logits(ids), with_lora)
    assert calls == [] and (base - with_lora).abs().max().item() > 1e-3
    session.set_weight("a", 0.5)
    session.forward_logits(ids)
    assert calls  # a new sum is computed, not reused
