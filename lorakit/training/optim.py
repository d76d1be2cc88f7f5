"""Optimizers and learning-rate schedules by the names text-generation-webui (and Trainer) used."""

from __future__ import annotations

import math

from lorakit.errors import UsageError


def make_optimizer(name: str, parameters, learning_rate: float, device: str, weight_decay: float = 0.0):
    """Same defaults as transformers' Trainer (betas 0.9/0.999, eps 1e-8, weight decay 0 unless asked).

    ``weight_decay`` applies to every trainable tensor: a LoRA (bias "none") has no bias or norm
    weights, which are what Trainer exempts from decay. AdamW decays decoupled from the gradient;
    SGD, Adagrad and RMSprop add it to the gradient (L2), as their torch classes define it.
    """
    import torch

    parameters = list(parameters)
    wd = float(weight_decay)
    if name in ("adamw_torch", "adamw_hf"):
        return torch.optim.AdamW(parameters, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    if name == "adamw_torch_fused":
        return torch.optim.AdamW(parameters, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd, fused=True)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(parameters, lr=learning_rate, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=learning_rate, weight_decay=wd)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(parameters, lr=learning_rate, scale_parameter=False, relative_step=False, warmup_init=False, weight_decay=wd)
    if name in ("adamw_bnb_8bit", "paged_adamw_8bit"):
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise UsageError(f"--optimizer {name} needs bitsandbytes", "pip install bitsandbytes, or use adamw_torch") from None
        if name == "paged_adamw_8bit":
            if not device.startswith("cuda"):
                raise UsageError("--optimizer paged_adamw_8bit needs a CUDA GPU", "use adamw_bnb_8bit or adamw_torch")
            return bnb.optim.PagedAdamW8bit(parameters, lr=learning_rate, weight_decay=wd)
        return bnb.optim.AdamW8bit(parameters, lr=learning_rate, weight_decay=wd)
    raise UsageError(f"unknown optimizer '{name}'")


def warmup_optimizer_steps(warmup_steps: int, accumulation_total: int) -> int:
    """``--warmup-steps`` counts micro-batches, as in text-generation-webui, which warmed the
    optimizer up for ceil(warmup / gradient accumulation) steps; kept so its settings mean the same."""
    return math.ceil(warmup_steps / max(1, accumulation_total))


def make_scheduler(name: str, optimizer, warmup_steps: int, total_steps: int):
    from transformers import get_scheduler

    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
