"""Load a GPTQ checkpoint with the GPTQModel engine, the way the ``autogptq`` loader needs it.

GPTQModel prints a banner, INFO lines and advice on stdout; lorakit keeps stdout for data. While it
imports and loads, its stdout is dropped (LORAKIT_DEBUG=1: sent to stderr); its failures still
arrive as exceptions.
"""

from __future__ import annotations

import os
from pathlib import Path

from lorakit.api import (
    CapabilityError,
    LoadOptions,
    pick_device,
    quiet_libraries,
    silenced_stdout,
    torch_dtype,
)


def engine_environment() -> None:
    """GPTQModel refuses more CPU workers than the machine has ("requests 2 workers but parent 'cpu'
    only has 1" on 2 cores); pick a safe default."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(2, os.cpu_count() or 1))))


def engine_dtype(options: LoadOptions, device: str):
    """bf16 on the CPU (the engine's kernels have no fp32 path), bf16/fp16 on GPUs."""
    import torch

    if options.dtype == "auto" and device == "cpu":
        return torch.bfloat16
    return torch_dtype(options.dtype, device)


def engine_backend(device: str, purpose: str):
    from gptqmodel import BACKEND

    if device == "cpu":
        return BACKEND.GPTQ_TORCH  # the only CPU kernel whose outputs keep gradients (see autogptq_loader)
    return BACKEND.AUTO_TRAINABLE if purpose == "train" else BACKEND.AUTO


def run_eagerly(model) -> int:
    """Undo the engine's lazy ``torch.compile`` of the dequantizer (about 20 s per shape on a CPU)."""
    changed = 0
    for module in model.modules():
        if "dequantize_weight" in vars(module):
            del vars(module)["dequantize_weight"]  # falls back to the class's plain method
            changed += 1
    return changed


def load_with_gptqmodel(model_path: Path, options: LoadOptions):
    """Tokenizer, model (a transformers model with the engine's quantized layers) and device."""
    quiet_libraries()
    engine_environment()
    from transformers import AutoTokenizer

    device = pick_device(options.cpu)
    if device == "mps":
        device = "cpu"  # GPTQModel's MPS support is separate (MLX); the torch kernel on CPU always works
    dtype = engine_dtype(options, device)
    with silenced_stdout():
        try:
            from gptqmodel import GPTQModel
        except Exception as error:  # a broken engine install: say which and how to fix it
            raise CapabilityError(f"GPTQModel failed to import: {type(error).__name__}: {error}", "pip install gptqmodel==7.6.0 optimum") from error
        wrapped = GPTQModel.load(
            str(model_path), backend=engine_backend(device, options.purpose), device=device, dtype=dtype,
            trust_remote_code=options.trust_remote_code,
        )
    model = wrapped.model
    run_eagerly(model)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=options.trust_remote_code)
    return model, tokenizer, device
