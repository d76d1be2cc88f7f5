"""Load a GPTQ checkpoint with the GPTQModel engine, the way the ``autogptq`` loader needs it.

GPTQModel prints a banner, INFO lines and advice on stdout; lorakit keeps stdout for data. While it
imports and loads, its stdout is dropped (LORAKIT_DEBUG=1: sent to stderr); its failures still
arrive as exceptions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

from lorakit.errors import CapabilityError
from lorakit.loader_api import LoadOptions


def engine_environment() -> None:
    """GPTQModel refuses more CPU workers than the machine has (GUIDE.md); pick a safe default."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(2, os.cpu_count() or 1))))


@contextlib.contextmanager
def quiet_engine_stdout():
    if os.environ.get("LORAKIT_DEBUG"):
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def quiet_engine() -> None:
    """Silence GPTQModel's logger (logbar), which writes a banner, INFO and WARN lines to *stdout*.

    It must run before anything imports gptqmodel, and PEFT does so while attaching any LoRA when
    gptqmodel is installed (its GPTQ dispatcher probes for it), so ``lorakit.quiet`` calls this for
    every command that loads a model; otherwise ``--json`` output would start with a banner.
    ``LORAKIT_DEBUG=1`` keeps everything. Cheap when gptqmodel is not installed.
    """
    if os.environ.get("LORAKIT_DEBUG") or importlib.util.find_spec("logbar") is None:
        return
    import logging

    logging.getLogger("tokenicer").setLevel(logging.WARNING)
    with quiet_engine_stdout():  # creating logbar's logger prints an empty line on stdout
        from logbar import LogBar

        LogBar.shared().setLevel(logging.ERROR)


def engine_dtype(options: LoadOptions, device: str):
    """bf16 on the CPU (the engine's kernels have no fp32 path), bf16/fp16 on GPUs."""
    import torch

    from lorakit.devices import torch_dtype

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
    from lorakit.quiet import quiet_libraries

    quiet_libraries()
    quiet_engine()
    engine_environment()
    from transformers import AutoTokenizer

    from lorakit.devices import pick_device

    device = pick_device(options.cpu)
    if device == "mps":
        device = "cpu"  # GPTQModel's MPS support is separate (MLX); the torch kernel on CPU always works
    dtype = engine_dtype(options, device)
    with quiet_engine_stdout():
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
