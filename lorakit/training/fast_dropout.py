"""LoRA dropout on the CPU with a quarter of the random draws.

PEFT applies ``nn.Dropout`` to each LoRA layer's input. On the CPU torch draws one number from its
Mersenne Twister per element (``bernoulli_``), which is slow: on SmolLM2 with LoRAs on q and v,
dropout took 0.55 s of a 6 s step (7.6 %; 1 thread, bf16). Here each 64-bit draw gives four 16-bit
values and an element is dropped when its value falls below ``round(p * 65536)``: the same
independent Bernoulli mask per layer, with ``p`` rounded to a multiple of 1/65536 (0.05 becomes
0.050003) and kept values scaled by ``1 / (1 - p)`` for that exact ``p``. Measured: 1.9 ms against
5.6 ms for a [668, 576] bf16 input. Masks come from torch's generator, so ``torch.manual_seed``,
the checkpointed RNG state (exact resume) and activation checkpointing's recomputation see the same
masks. GPUs keep torch's dropout (its Philox generator is fast there).
"""

from __future__ import annotations

import functools

LEVELS = 1 << 16


def quantised_p(p: float) -> float:
    return round(p * LEVELS) / LEVELS


@functools.cache
def _module_class():
    import torch

    class FastDropout(torch.nn.Module):
        def __init__(self, p: float):
            super().__init__()
            self.p = p
            self.dropped = round(p * LEVELS)  # values below -32768 + dropped are dropped
            self.scale = LEVELS / (LEVELS - self.dropped)

        def forward(self, x):
            if not self.training or self.dropped == 0:
                return x
            count = x.numel()
            words = torch.randint(-(1 << 63), (1 << 63) - 1, ((count + 3) // 4,), dtype=torch.int64, device=x.device)
            values = words.view(torch.int16)[:count].view(x.shape)
            keep = (values >= self.dropped - (LEVELS >> 1)).to(x.dtype)
            return x * keep.mul_(self.scale)

        def extra_repr(self) -> str:
            return f"p={self.p} (as {quantised_p(self.p):.6f})"

    return FastDropout


def use_fast_dropout(peft_model) -> int:
    """Swap the ``nn.Dropout`` of every LoRA layer on the CPU for :class:`FastDropout`; returns how many."""
    import torch

    swapped = 0
    for module in peft_model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        weight = getattr(getattr(module, "base_layer", None), "weight", None)
        if weight is None or weight.device.type != "cpu":
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                dropouts[name] = _module_class()(dropout.p)
                swapped += 1
    return swapped
