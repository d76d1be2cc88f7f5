"""Sampling settings and streaming text generation through any loader session."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

from lorakit.errors import UsageError


@dataclass
class SamplingSettings:
    max_new_tokens: int = 200
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 20
    repetition_penalty: float = 1.15
    seed: int | None = None
    greedy: bool = False

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise UsageError("--max-new-tokens must be at least 1")
        if not self.greedy and self.temperature <= 0:
            raise UsageError("--temperature must be above 0", "use --greedy for deterministic output")
        if not 0 < self.top_p <= 1:
            raise UsageError("--top-p must be in (0, 1]")
        if self.top_k < 0:
            raise UsageError("--top-k must be 0 (off) or more")
        if self.repetition_penalty <= 0:
            raise UsageError("--repetition-penalty must be above 0")

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if self.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or None)
        return kwargs

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationResult:
    text: str
    new_tokens: int
    seconds: float
    finish_reason: str

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def _streamer(tokenizer, on_text: Callable[[str], None]):
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            if text:
                on_text(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def generate(session, input_ids, settings: SamplingSettings, on_text: Callable[[str], None] | None = None) -> GenerationResult:
    import torch

    if settings.seed is not None:
        torch.manual_seed(settings.seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(settings.seed)
    streamer = _streamer(session.tokenizer, on_text) if on_text else None
    started = time.perf_counter()
    new_ids = session.generate_ids(input_ids, settings, streamer=streamer)
    seconds = time.perf_counter() - started
    ids = new_ids.tolist()
    eos = session.tokenizer.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    finish = "eos" if ids and ids[-1] in eos_ids else "length"
    text = session.tokenizer.decode(ids, skip_special_tokens=True)
    return GenerationResult(text, len(ids), seconds, finish)
