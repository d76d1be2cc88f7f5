"""Per-row token choice with OpenAI's semantics (not ``generate``'s webui-style defaults).

``temperature: 0`` is greedy; no penalty applies unless the request asks for one:
``frequency_penalty``/``presence_penalty`` (OpenAI: subtract count * f + [count > 0] * p from the
logits of tokens generated so far) or ``repetition_penalty`` (the multiplicative CTRL/transformers
penalty over prompt and output tokens, as vLLM accepts it as an extra field). Each row has its own
random generator (seeded by ``seed`` when given), so a row's text does not depend on which other
requests share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalised(self) -> bool:
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0 or self.repetition_penalty != 1.0


class RowSampler:
    """The state one sequence needs to pick its tokens: its generator and token counts."""

    def __init__(self, params: SamplingParams, prompt_ids: list[int], device):
        import torch

        self.params = params
        self.prompt_ids = prompt_ids
        self.generator = None
        if not params.greedy:
            self.generator = torch.Generator(device=device)
            if params.seed is not None:
                self.generator.manual_seed(params.seed)
            else:
                self.generator.seed()

    def adjust(self, logits, generated: list[int]):
        """Apply the requested penalties to one row's logits ([V], float)."""
        import torch

        p = self.params
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(self.prompt_ids) | set(generated)), dtype=torch.long, device=logits.device)
            if len(seen):
                values = logits[seen]
                logits[seen] = torch.where(values < 0, values * p.repetition_penalty, values / p.repetition_penalty)
        if generated and (p.frequency_penalty or p.presence_penalty):
            ids, counts = torch.tensor(generated, dtype=torch.long, device=logits.device).unique(return_counts=True)
            logits[ids] -= counts.to(logits.dtype) * p.frequency_penalty + p.presence_penalty
        return logits

    def pick(self, logits) -> int:
        import torch

        p = self.params
        if p.greedy:
            return int(torch.argmax(logits))
        logits = logits / p.temperature
        if p.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True)
            probs = torch.softmax(ordered, dim=-1)
            outside = probs.cumsum(-1) - probs > p.top_p  # keep the smallest prefix reaching top_p
            ordered = ordered.masked_fill(outside, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(0, order, ordered)
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))


def pick_tokens(logits, samplers: list[RowSampler], generated: list[list[int]]) -> list[int]:
    """One token per row from ``logits`` [B, V]; plain greedy rows are decided with one argmax."""
    import torch

    simple = [i for i, s in enumerate(samplers) if s.params.greedy and not s.params.penalised]
    chosen: list[int | None] = [None] * len(samplers)
    if simple:
        picks = torch.argmax(logits[simple] if len(simple) != len(samplers) else logits, dim=-1).tolist()
        for i, token in zip(simple, picks):
            chosen[i] = token
    for i, sampler in enumerate(samplers):
        if chosen[i] is None:
            row = logits[i].float().clone()
            chosen[i] = sampler.pick(sampler.adjust(row, generated[i]))
    return chosen
