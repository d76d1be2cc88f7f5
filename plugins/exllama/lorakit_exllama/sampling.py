"""Next-token choice from one row of logits, with lorakit's sampling settings (engine-independent)."""

from __future__ import annotations


def pick_next(logits, settings, previous, generator) -> int:
    """Greedy or temperature/top-k/top-p sampling with a repetition penalty, on CPU float logits."""
    import torch

    logits = logits.clone()
    if settings.repetition_penalty != 1.0 and previous.numel():
        seen = previous.unique()
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / settings.repetition_penalty, values * settings.repetition_penalty)
    if settings.greedy:
        return int(torch.argmax(logits))
    logits = logits / settings.temperature
    if settings.top_k:
        cutoff = torch.topk(logits, min(settings.top_k, logits.numel())).values[-1]
        logits[logits < cutoff] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < settings.top_p
        mask = torch.zeros_like(probs, dtype=torch.bool)
        mask[order[keep]] = True
        probs = torch.where(mask, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))
