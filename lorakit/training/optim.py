"""Optimizers and learning-rate schedules by the names text-generation-webui (and Trainer) used."""

from __future__ import annotations

import math

from lorakit.errors import UsageError


def make_optimizer(name: str, parameters, learning_rate: float, device: str):
    """Same defaults as transformers' Trainer (betas 0.9/0.999, eps 1e-8, no weight decay)."""
    import torch

    parameters = list(parameters)
    if name in ("adamw_torch", "adamw_hf"):
        return torch.optim.AdamW(parameters, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    if name == "adamw_torch_fused":
        return torch.optim.AdamW(parameters, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate)
    if name == "adagrad":
        return torch.optim.Adagrad(parameters, lr=learning_rate)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=learning_rate)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(parameters, lr=learning_rate, scale_parameter=False, relative_step=False, warmup_init=False)
    if name in ("adamw_bnb_8bit", "paged_adamw_8bit"):
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise UsageError(f"--optimizer {name} needs bitsandbytes", "pip install bitsandbytes, or use adamw_torch") from None
        if name == "paged_adamw_8bit":
            if not device.startswith("cuda"):
                raise UsageError("--optimizer paged_adamw_8bit needs a CUDA GPU", "use adamw_bnb_8bit or adamw_torch")
            return bnb.optim.PagedAdamW8bit(parameters, lr=learning_rate)
        return bnb.optim.AdamW8bit(parameters, lr=learning_rate)
    raise UsageError(f"unknown optimizer '{name}'")


def warmup_optimizer_steps(warmup_steps: int, accumulation_total: int) -> int:
    """``--warmup-steps`` counts micro-batches, as in text-generation-webui, which warmed the
    optimizer up for ceil(warmup / gradient accumulation) steps; kept so its settings mean the same."""
    return math.ceil(warmup_steps / max(1, accumulation_total))


def make_scheduler(name: str, optimizer, warmup_steps: int, total_steps: int):
    from transformers import get_scheduler

    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
