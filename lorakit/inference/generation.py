"""Sampling settings and streaming text generation through any loader session."""

from __future__ import annotations

import json
import math
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

    def validate(self, source: str | None = None) -> None:
        """Refuse impossible values; ``source`` (e.g. ``prompts.jsonl line 2``) names a JSONL line's keys
        instead of the flags, so a bad value is reported where the user wrote it."""
        def name(key: str) -> str:
            return f'{source}: "{key}"' if source else "--" + key.replace("_", "-")

        check_types(self.to_dict(), source)
        if self.max_new_tokens < 1:
            raise UsageError(f"{name('max_new_tokens')} must be at least 1 (got {self.max_new_tokens})")
        if not self.greedy and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UsageError(f"{name('temperature')} must be a number above 0 (got {self.temperature:g})", "use --greedy for deterministic output")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"{name('top_p')} must be in (0, 1] (got {self.top_p:g})")
        if self.top_k < 0:
            raise UsageError(f"{name('top_k')} must be 0 (off) or more (got {self.top_k})")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise UsageError(f"{name('repetition_penalty')} must be a number above 0 (got {self.repetition_penalty:g})")

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if self.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or None)
        return kwargs

    def to_dict(self) -> dict:
        return asdict(self)


_KINDS = {"max_new_tokens": "integer", "top_k": "integer", "seed": "integer", "temperature": "number", "top_p": "number",
          "repetition_penalty": "number", "greedy": "boolean"}


def check_types(values: dict, source: str | None = None) -> None:
    """Each sampling value has its field's JSON type (``seed`` may also be null); checked before any use."""
    for key, value in values.items():
        kind = _KINDS.get(key)
        if kind is None or (key == "seed" and value is None):
            continue
        if kind == "boolean":
            good = isinstance(value, bool)
        elif kind == "integer":
            good = isinstance(value, int) and not isinstance(value, bool)
        else:
            good = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not good:
            where = f'{source}: "{key}"' if source else "--" + key.replace("_", "-")
            raise UsageError(f"{where} must be {'an' if kind == 'integer' else 'a'} {kind}, not {json.dumps(value)}")


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
