"""Summed negative log-likelihood of planned windows, batched, with memory bounded by the batch.

Two ways to get logits, one result:

- **fast** (a PyTorch Hugging Face model, e.g. the transformers loader, with or without PEFT):
  ``model(input_ids, logits_to_keep=k, use_cache=False)`` computes the output head only on the
  positions that predict a scored token (about ``stride`` of ``max_length``) and builds no
  KV cache. The decoder still sees the whole window, so the numbers are those of a full forward.
- **generic** (any backend): ``Session.forward_logits`` and the same slicing afterwards.

Windows of one shape are stacked with no padding (see :func:`lorakit.evaluation.windows.batches`),
so there is no attention mask and batched results equal one-window-at-a-time results. The loss is
taken in fp32 per window row, so a bf16 model's logits are not copied to fp32 all at once; window
sums are added up in Python floats (fp64, and MPS has no fp64 tensors). On a CUDA out-of-memory
error the batch is halved and retried.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

from lorakit.evaluation.documents import TokenDocument
from lorakit.evaluation.windows import Window, batches

IGNORE_INDEX = -100
_MIB = 1 << 20


@dataclass
class NllTotal:
    nll_sum: float = 0.0
    tokens: int = 0

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / self.tokens if self.tokens else float("nan")


def targets_of(document: TokenDocument, window: Window):
    """The scored token ids of a window (``-100`` where a formatted row's prompt is context only)."""
    source = document.ids if document.labels is None else document.labels
    return source[window.begin + window.first_target : window.end]


def count_targets(documents: Sequence[TokenDocument], windows: Sequence[Window]) -> int:
    total = 0
    for window in windows:
        targets = targets_of(documents[window.doc], window)
        total += int((targets != IGNORE_INDEX).sum()) if documents[window.doc].labels is not None else int(targets.numel())
    return total


def fast_model(session):
    """The session's HF model when it can return only the last ``k`` logits, else ``None``."""
    import torch

    model = getattr(session, "model", None)
    if not isinstance(model, torch.nn.Module):
        return None
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        parameters = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return None
    return model if "logits_to_keep" in parameters else None


def vocab_size(session) -> int:
    config = getattr(getattr(session, "model", None), "config", None)
    size = getattr(config, "vocab_size", None)
    if not size and getattr(session, "tokenizer", None) is not None:
        size = len(session.tokenizer)
    return int(size or 50_000)


def auto_batch_size(device: str, max_length: int, stride: int, vocab: int) -> int:
    """Windows per forward pass: a token budget for activations, a byte budget for the logits."""
    on_gpu = device not in ("cpu", "mps")
    token_budget = 32_768 if on_gpu else 4_096
    logits_budget = (2048 if on_gpu else 512) * _MIB
    kept = min(max_length, stride + 1)
    by_tokens = token_budget // max_length
    by_logits = logits_budget // (kept * vocab * 4)
    return max(1, min(64, by_tokens, by_logits))


class WindowScorer:
    def __init__(self, session, documents: Sequence[TokenDocument], batch_size: int, generic: bool = False):
        self.session = session
        self.documents = documents
        self.batch_size = max(1, batch_size)
        self.model = None if generic else fast_model(session)
        self.device = session.device()

    @property
    def path_name(self) -> str:
        return "generic" if self.model is None else "fast"

    def score(self, windows: Sequence[Window], advance: Callable[[int, int], None] | None = None) -> NllTotal:
        """Score every window; ``advance(windows_done, tokens_done)`` is called after each batch."""
        import torch

        nll_sum, tokens = 0.0, 0
        pending = list(batches(windows, self.batch_size))
        while pending:
            batch = pending.pop(0)
            try:
                nll, counted = self._score_batch(batch)
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise
                torch.cuda.empty_cache()
                self.batch_size = max(1, len(batch) // 2)
                pending[:0] = list(batches(batch, self.batch_size))
                continue
            nll_sum += nll
            tokens += counted
            if advance:
                advance(len(batch), counted)
        return NllTotal(nll_sum, tokens)

    def _score_batch(self, batch: list[Window]):
        import torch
        import torch.nn.functional as F

        length, first = batch[0].shape
        ids = torch.stack([self.documents[w.doc].ids[w.begin : w.end] for w in batch]).to(self.device)
        targets = torch.stack([targets_of(self.documents[w.doc], w) for w in batch]).to(self.device)
        keep = length - first + 1  # logits at positions first-1 .. length-1; the last one predicts past the window
        with torch.inference_mode():
            if self.model is not None:
                logits = self.model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
            else:
                logits = self.session.forward_logits(ids)[:, first - 1 :]
            targets = targets.to(logits.device)  # a model spread over devices returns logits on its last one
            row_sums = [
                F.cross_entropy(logits[row, : length - first].float(), targets[row], ignore_index=IGNORE_INDEX, reduction="sum")
                for row in range(len(batch))
            ]
            nll = sum(torch.stack(row_sums).tolist())  # one transfer per batch; summed in Python floats (fp64)
            counted = int((targets != IGNORE_INDEX).sum())
        return nll, counted
