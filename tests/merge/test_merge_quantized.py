"""Quantized bases: refused by default (one line), merged into a 16-bit dequantized copy with --dequantize."""

from __future__ import annotations

import json

import pytest
import torch
from merge_helpers import _model, adapters_dir, no_leftovers, one_torch_thread  # noqa: F401  (fixtures)
from safetensors.torch import load_file


def _bnb_base(tiny_model_dir, folder, kind: str):
    """The tiny Llama saved by transformers in bitsandbytes 8-bit or 4-bit (made on the CPU)."""
    pytest.importorskip("bitsandbytes")
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_8bit=True) if kind == "8bit" else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quant, device_map={"": "cpu"})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind,label", [("8bit", "8-bit (bitsandbytes)"), ("4bit", "4-bit (bitsandbytes)")])
def test_bitsandbytes_base_is_refused_then_dequantized(run_cli, tiny_model_dir, tiny_adapter_dir, adapters_dir, tmp_path, kind, label):
    base = _bnb_base(tiny_model_dir, adapters_dir / f"tiny-{kind}", kind)
    out = tmp_path / "merged"
    code, _, err = run_cli("merge", str(base), "--lora", str(tiny_adapter_dir), "--output", str(out))
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1 and label in errors[0] and "--dequantize" in errors[0] and "rounds" in errors[0]
    assert not out.exists() and no_leftovers(tmp_path) == []

    code, stdout, err = run_cli("merge", str(base), "--lora", str(tiny_adapter_dir), "--output", str(out), "--dequantize", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    weights = load_file(out / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert not any(name.endswith(("SCB", "weight_format", "absmax", "quant_map")) or "quant_state" in name for name in weights)
    check = report["verification"]
    assert check["reference"].startswith("dequantized base") and check["max_abs_logit_diff"] <= check["tolerance"]
    # The LoRA really is in there: the merged q_proj differs from the dequantized base by about the update.
    original = load_file(tiny_model_dir / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    adapter = load_file(tiny_adapter_dir / "adapter_model.safetensors")
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    delta = adapter[f"{prefix}.lora_B.weight"] @ adapter[f"{prefix}.lora_A.weight"] * 2.0  # alpha 8 / r 4
    error = (weights["model.layers.0.self_attn.q_proj.weight"].float() - (original + delta)).abs().max().item()
    assert error < 0.1 * delta.abs().max().item()  # quantization + bf16 error only


def test_gptq_base_is_refused_then_dequantized_exactly(run_cli, tiny_model_dir, tiny_adapter_dir, adapters_dir, tmp_path):
    gptq_fixtures = pytest.importorskip("gptq_fixtures")
    base = adapters_dir / "tiny-gptq"
    if not base.exists():
        gptq_fixtures.write_rtn_gptq_checkpoint(tiny_model_dir, base)
    out = tmp_path / "merged"
    code, _, err = run_cli("merge", str(base), "--lora", str(tiny_adapter_dir), "--output", str(out))
    assert code == 1 and "4-bit GPTQ" in err and "--dequantize" in err and not out.exists()

    code, _, err = run_cli("merge", str(base), "--lora", str(tiny_adapter_dir), "--output", str(out), "--dequantize", "--dtype", "fp32", "--no-verify")
    assert code == 0, err
    _, reference = gptq_fixtures.rtn_quantize_state(load_file(str(tiny_model_dir / "model.safetensors")))
    merged = load_file(out / "model.safetensors")
    assert set(merged) == set(reference)
    adapter = load_file(tiny_adapter_dir / "adapter_model.safetensors")
    for name, tensor in reference.items():
        module = name.removesuffix(".weight")
        key = f"base_model.model.{module}.lora_A.weight"
        expected = tensor + (adapter[key.replace("lora_A", "lora_B")] @ adapter[key] * 2.0 if key in adapter else 0)
        assert (merged[name] - expected).abs().max().item() <= 1e-5, name
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
