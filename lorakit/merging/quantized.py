"""Quantized bases: refuse by default, or merge into a 16-bit dequantized copy with ``--dequantize``.

Adding a LoRA update to 8-bit or 4-bit weights and rounding again keeps almost none of it (the update
is far smaller than one quantization step; a merged 4-bit SmolLM2 answered like
the base). ``--dequantize`` turns the base into 16-bit weights first and merges into those:
bitsandbytes through transformers' own ``dequantize()``, GPTQ by unpacking its integer layout.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.merging.checkpoint import MemorySource, TensorSource


def quantization_config(config: dict) -> dict | None:
    found = config.get("quantization_config")
    if not found and isinstance(config.get("text_config"), dict):
        found = config["text_config"].get("quantization_config")
    return found if isinstance(found, dict) else None


def describe(quant: dict) -> str:
    method = str(quant.get("quant_method", "unknown")).lower()
    if method == "bitsandbytes":
        return "8-bit (bitsandbytes)" if quant.get("load_in_8bit") else "4-bit (bitsandbytes)"
    if method == "gptq":
        return f"{quant.get('bits', '?')}-bit GPTQ"
    return f"{method}-quantized"


def refuse(model_label: str, quant: dict) -> LorakitError:
    return LorakitError(
        f"{model_label} is a {describe(quant)} model: merging a LoRA into quantized weights rounds most of the update away",
        "pass --dequantize to merge into a 16-bit copy of the base (the output is a 16-bit model)",
    )


def dequantized_source(model_path: Path, quant: dict, source: TensorSource, trust_remote_code: bool = False) -> TensorSource:
    method = str(quant.get("quant_method", "")).lower()
    if method == "bitsandbytes":
        return _bitsandbytes(model_path, source, trust_remote_code)
    if method == "gptq":
        from lorakit.merging.gptq_dequant import GptqDequantSource

        return GptqDequantSource(source, quant)
    raise LorakitError(f"lorakit cannot dequantize a {describe(quant)} model", "dequantize it with its own tools, or merge into the original 16-bit base")


def _bitsandbytes(model_path: Path, source: TensorSource, trust_remote_code: bool) -> TensorSource:
    """Load with bitsandbytes, dequantize in place, keep one entry per stored tensor (tied ones once)."""
    from lorakit.output.quiet import quiet_libraries

    quiet_libraries()
    from transformers import AutoModelForCausalLM

    from lorakit.loaders.devices import pick_device

    device = pick_device()
    model = AutoModelForCausalLM.from_pretrained(model_path, device_map={"": device if device != "cuda" else 0}, trust_remote_code=trust_remote_code)
    model.dequantize()
    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # a tied weight, stored once in the checkpoint
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.detach().cpu()
    del model
    return MemorySource(tensors, source.largest_file_bytes())
