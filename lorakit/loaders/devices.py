"""Pick the device and dtype; nothing here assumes a CPU."""

from __future__ import annotations

from lorakit.errors import UsageError

DTYPES = ("auto", "fp32", "bf16", "fp16")


def pick_device(cpu: bool = False) -> str:
    import torch

    if cpu:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def torch_dtype(name: str, device: str):
    """``auto`` is fp32 on CPU (fastest and exact there) and bf16 on GPUs that support it, else fp16."""
    import torch

    if name not in DTYPES:
        raise UsageError(f"unknown --dtype '{name}'", "use one of: " + ", ".join(DTYPES))
    if name == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
