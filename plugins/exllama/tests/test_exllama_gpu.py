"""ExLlamaV2 on a CUDA GPU: the GPTQ SmolLM2 checkpoint, one LoRA, weights, fast removal.

The reference is the gptq_monkeypatch loader on the same checkpoint with PEFT, in fp16 on the same
GPU. These tests skip cleanly without CUDA or without exllamav2 (see the plugin README for when
they last ran).
"""

import importlib.util

import pytest
import torch

from lorakit.api import LoadOptions
from lorakit.loaders.registry import all_loaders

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("exllamav2") is None, reason="needs exllamav2 (pip install exllamav2)"),
]

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def smollm2_lora(smollm2_dir, tmp_path_factory):
    from lorakit_testing import make_peft_adapter

    return make_peft_adapter(smollm2_dir, tmp_path_factory.mktemp("exl") / "smol-lora", scale=0.05)


def reference_logits(model_path, ids, lora=None, weight=1.0):
    session = all_loaders()["gptq_monkeypatch"].load(model_path, LoadOptions(dtype="fp16"))
    if lora:
        session.add_lora("ref", lora, weight)
    logits = session.forward_logits(ids).float().cpu()
    session.close()
    return logits


def test_base_lora_weight_and_removal_match_the_reference(smollm2_gptq_dir, smollm2_lora):
    session = all_loaders()["exllama"].load(smollm2_gptq_dir, LoadOptions())
    ids = session.tokenizer(PROMPT, return_tensors="pt").input_ids
    base = session.forward_logits(ids).cpu()
    assert (base - reference_logits(smollm2_gptq_dir, ids)).abs().max() < 0.15

    session.add_lora("smol", smollm2_lora)
    with_lora = session.forward_logits(ids).cpu()
    expected = reference_logits(smollm2_gptq_dir, ids, smollm2_lora)
    assert (with_lora - base).abs().max() > 0.05, "the LoRA changed nothing"
    assert (with_lora - expected).abs().max() < 0.15

    session.set_weight("smol", 0.5)
    half = session.forward_logits(ids).cpu()
    assert (half - reference_logits(smollm2_gptq_dir, ids, smollm2_lora, 0.5)).abs().max() < 0.15

    report = session.remove_lora("smol")
    assert "not reloaded" in report.detail and report.seconds < 1.0
    assert (session.forward_logits(ids).cpu() - base).abs().max() < 1e-3


def test_greedy_generation_runs(smollm2_gptq_dir):
    from lorakit.inference.generation import SamplingSettings

    session = all_loaders()["exllama"].load(smollm2_gptq_dir, LoadOptions())
    ids = session.tokenizer(PROMPT, return_tensors="pt").input_ids
    new = session.generate_ids(ids, SamplingSettings(max_new_tokens=8, greedy=True))
    assert 0 < len(new) <= 8
    assert "Paris" in session.tokenizer.decode(new)
