"""Which attention kernel a training forward runs on packed rows, and the one switch that sets it.

Three paths, best first:

1. ``flash_attention_2`` (varlen): on CUDA with the ``flash-attn`` package, a half-precision forward
   (bf16/fp16 autocast) and a model transformers can run with flash attention. transformers sees
   ``position_ids`` restart inside the packed row and calls ``flash_attn_varlen_func`` with the
   examples' boundaries, so no example attends to another and no T x T mask is ever built.
2. ``lorakit_packed_sdpa``: one causal ``scaled_dot_product_attention`` per example
   (:mod:`lorakit.training.packed_attention`), everywhere else the model uses ``sdpa``.
3. the model's own implementation (``sdpa`` or ``eager``) with transformers' block-diagonal mask.

The run summary names the path that ran (``attention`` in ``--json``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from lorakit.training.packed_attention import NAME as PACKED_SDPA
from lorakit.training.packed_attention import packed_attention

FLASH = "flash_attention_2"


@dataclass(frozen=True)
class AttentionPath:
    name: str  # flash_attention_2 / lorakit_packed_sdpa / the model's own implementation
    segments: bool  # the forward passes example boundaries (lorakit_packed_sdpa only)

    @property
    def description(self) -> str:
        if self.name == FLASH:
            return "flash_attention_2 varlen (packed rows, one kernel per micro-batch)"
        if self.name == PACKED_SDPA:
            return "per-example causal SDPA (lorakit_packed_sdpa)"
        return f"{self.name} with a block-diagonal mask"


def flash_attn_installed() -> bool:
    """The flash-attn package in a version transformers accepts (it also requires a CUDA torch)."""
    try:
        from transformers.utils import is_flash_attn_2_available
    except ImportError:
        return False
    return bool(is_flash_attn_2_available())


def flash_eligible(model, device, autocast_dtype, flash_installed: bool) -> bool:
    """True when flash attention can replace the model's attention for training here.

    flash-attn has no fp32 kernels and runs only on CUDA; models it does not support (or configs
    with logit soft-capping it cannot reproduce exactly on old versions) keep SDPA.
    """
    import torch

    if not flash_installed or not str(device).startswith("cuda"):
        return False
    if autocast_dtype not in (torch.bfloat16, torch.float16):
        return False
    if not getattr(model, "_supports_flash_attn", False):
        return False
    config = getattr(model, "config", None)
    if config is None or getattr(config, "sub_configs", None):  # multimodal and nested configs: leave them alone
        return False
    return bool(getattr(model, "_can_set_attn_implementation", lambda: False)())


@contextlib.contextmanager
def training_attention(model, device, autocast_dtype, longest_example: int, flash_installed: bool | None = None):
    """Switch ``model`` (the transformers model, not the PEFT wrapper) to the best path; yields its AttentionPath."""
    if flash_installed is None:
        flash_installed = flash_attn_installed()
    if flash_eligible(model, device, autocast_dtype, flash_installed):
        previous = model.config._attn_implementation
        model.set_attn_implementation(FLASH)
        try:
            yield AttentionPath(FLASH, segments=False)
        finally:
            model.set_attn_implementation(previous)
        return
    with packed_attention(model, longest_example) as per_example:
        if per_example:
            yield AttentionPath(PACKED_SDPA, segments=True)
        else:
            yield AttentionPath(str(getattr(model.config, "_attn_implementation", None) or "eager"), segments=False)
