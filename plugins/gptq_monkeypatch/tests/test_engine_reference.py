"""GPTQLinear against the GPTQModel engine on the same checkpoints: same weights, same logits.

The engine runs its ``torch`` kernel in bf16 (it has no fp32 path); the patched model runs in bf16
too, so both round the same products the same way.
"""

import pytest
import torch
from gptq_fixtures import needs_engine

from lorakit.api import LoadOptions
from lorakit.loaders.registry import all_loaders

pytestmark = needs_engine


def engine_and_patched(model_path):
    from lorakit.builtin_plugins.gptq_engine import load_with_gptqmodel

    engine, tokenizer, _ = load_with_gptqmodel(model_path, LoadOptions(dtype="bf16"))
    patched = all_loaders()["gptq_monkeypatch"].load(model_path, LoadOptions(dtype="bf16"))
    return engine, patched.model, tokenizer


def compare(engine, patched, input_ids, decoder_layers=None) -> tuple[int, float]:
    """Decode every GPTQ layer (or those of some decoder layers) both ways; then the logits."""
    from lorakit_gptq_monkeypatch.layer import GPTQLinear

    wanted = None if decoder_layers is None else tuple(f".layers.{index}." for index in decoder_layers)
    layers = [
        (name, module) for name, module in patched.named_modules()
        if isinstance(module, GPTQLinear) and (wanted is None or any(part in name for part in wanted))
    ]
    with torch.no_grad():
        for name, module in layers:
            theirs = engine.get_submodule(name).dequantize_weight()
            assert torch.equal(module.dequantized(theirs.dtype), theirs), f"{name} decodes differently"
        diff = (engine(input_ids).logits.float() - patched(input_ids).logits.float()).abs().max().item()
    return len(layers), diff


def test_tiny_checkpoint_matches_the_engine(tiny_gptq_dir):
    engine, patched, tokenizer = engine_and_patched(tiny_gptq_dir)
    count, diff = compare(engine, patched, tokenizer("The capital of France is", return_tensors="pt").input_ids)
    print(f"\ntiny GPTQ (RTN-packed): {count} layers decode identically; max abs logit diff vs GPTQModel: {diff}")
    assert count == 14 and diff == 0.0


@pytest.mark.slow
def test_smollm2_quantized_by_gptqmodel_matches_the_engine(smollm2_gptq_dir):
    engine, patched, tokenizer = engine_and_patched(smollm2_gptq_dir)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    count, diff = compare(engine, patched, ids, decoder_layers=(0, 14, 29))  # all 210 take a minute on 2 cores
    print(f"\nSmolLM2 GPTQ (GPTQModel, g64, act-order): {count} layers decode identically; max abs logit diff: {diff}")
    assert count == 3 * 7
    assert diff == 0.0
