"""Does each attached LoRA change the model's output? Measured on a few probe prompts.

For every LoRA alone: mean KL(base || base+LoRA) of the next-token distributions, the share of
positions whose top token changes, and the largest logit change. A LoRA whose largest change is at
float noise level changes nothing (typically an untrained adapter whose B matrices are zero).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PROBE_PROMPTS = (
    "The capital of France is",
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nName three colors.\n\n### Response:\n",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village,",
)
NO_EFFECT_LOGIT_DIFF = 1e-4


@dataclass
class Effect:
    name: str
    kl: float
    top_token_changed: float
    max_logit_diff: float

    @property
    def changes_output(self) -> bool:
        return self.max_logit_diff > NO_EFFECT_LOGIT_DIFF

    def to_dict(self) -> dict:
        return {**asdict(self), "changes_output": self.changes_output}

    def describe(self) -> str:
        if not self.changes_output:
            return f"{self.name}: changes NOTHING (max logit change {self.max_logit_diff:.2e}); is it an untrained or empty adapter?"
        return (
            f"{self.name}: changes the output (KL {self.kl:.4f}, top token changed at {self.top_token_changed:.0%} "
            f"of probe positions, max logit change {self.max_logit_diff:.3f})"
        )


def _probe_logits(session, encoded):
    return [session.forward_logits(ids).float() for ids in encoded]


def measure(session, names: list[str] | None = None) -> list[Effect]:
    import torch

    names = list(names if names is not None else session.names())
    encoded = [session.tokenizer(text, return_tensors="pt")["input_ids"] for text in PROBE_PROMPTS]
    with session.only([]):
        base = _probe_logits(session, encoded)
    effects = []
    for name in names:
        with session.only([name]):
            tuned = _probe_logits(session, encoded)
        kls, changed, max_diff, positions = [], 0, 0.0, 0
        for b, t in zip(base, tuned):
            log_p = torch.log_softmax(b, dim=-1)
            log_q = torch.log_softmax(t, dim=-1)
            kls.append((log_p.exp() * (log_p - log_q)).sum(-1).flatten())
            changed += int((b.argmax(-1) != t.argmax(-1)).sum())
            positions += b.shape[0] * b.shape[1]
            max_diff = max(max_diff, float((b - t).abs().max()))
        effects.append(Effect(name, float(torch.cat(kls).mean().clamp(min=0)), changed / max(positions, 1), max_diff))
    return effects
