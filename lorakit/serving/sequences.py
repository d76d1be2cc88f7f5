"""One request's life in the engine: its tokens, its text so far, how and why it stops.

Text is decoded from all generated ids at every step (so the streamed deltas always add up to
exactly what a one-shot decode gives, as ``lorakit generate`` prints); a trailing incomplete UTF-8
character and any tail that may be the start of a stop string are held back until they resolve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from lorakit.serving.mixes import Mix
from lorakit.serving.sampling import SamplingParams


@dataclass
class Sequence:
    prompt_ids: list[int]
    mix: Mix
    params: SamplingParams
    max_tokens: int
    stops: tuple[str, ...] = ()
    emit: Callable[[str, dict], None] = lambda kind, data: None
    """``emit("text", {"text": delta})``, then ``emit("done", {...})`` or ``emit("error", {...})``; called from the engine thread."""
    ignore_eos: bool = False
    """Generate exactly ``max_tokens`` (vLLM's extra field; benchmarks use it for equal work)."""
    min_tokens: int = 0
    """The end-of-sequence token cannot be chosen before this many tokens (vLLM's ``min_tokens``)."""
    generated: list[int] = field(default_factory=list)
    sent: str = ""
    finish: str | None = None
    cancelled: bool = False
    sampler: object = None
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None

    @property
    def position(self) -> int:
        """The position id of the last generated token (the one fed in next)."""
        return len(self.prompt_ids) + len(self.generated) - 1

    def usage(self) -> dict:
        prompt, completion = len(self.prompt_ids), len(self.generated)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def advance(self, token: int, tokenizer, eos_ids: set[int]) -> bool:
        """Take one new token; emit the text that became certain; return True when the sequence ended."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.generated.append(token)
        if token in eos_ids and not self.ignore_eos:
            self.finish = "stop"
        elif len(self.generated) >= self.max_tokens:
            self.finish = "length"
        text = tokenizer.decode(self.generated, skip_special_tokens=True)
        if self.stops:
            cut = _first_stop(text, self.stops, max(0, len(self.sent) - max(map(len, self.stops))))
            if cut is not None:
                text, self.finish = text[:cut], "stop"
        if self.finish is None:
            text = _certain_part(text, self.stops)
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.emit("text", {"text": text[len(self.sent):]})
            self.sent = text
        if self.finish is not None:
            self.emit("done", {"finish_reason": self.finish, "usage": self.usage(), "text": self.sent})
            return True
        return False

    def fail(self, message: str, status: int = 500) -> None:
        self.finish = "error"
        self.emit("error", {"message": message, "status": status})


def _first_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    found = [index for index in (text.find(stop, start) for stop in stops if stop) if index >= 0]
    return min(found) if found else None


def _certain_part(text: str, stops: tuple[str, ...]) -> str:
    if text.endswith("\ufffd"):
        text = text.rstrip("\ufffd")
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                hold = max(hold, size)
                break
    return text[: len(text) - hold] if hold else text
