"""The strided windows of the transformers documentation ("Perplexity of fixed-length models").

For a token sequence of length ``n`` the documented loop is::

    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        trg_len = end - prev_end          # tokens not scored by an earlier window
        labels = ids[begin:end]; labels[:-trg_len] = -100
        ...
        prev_end = end
        if end == n: break

Every window sees up to ``max_length`` tokens of context, and each token is scored exactly once,
by the first window whose new part contains it. Inside a window the model predicts token ``t``
from positions ``< t``, so the window's first position is never a target. The set of scored
tokens is therefore: positions ``max(prefix, 1) .. end - begin - 1`` of each window, where
``prefix = (end - begin) - trg_len`` is the masked overlap.

Planning windows is pure integer arithmetic (no torch), done once and shared by every
configuration of a ``--compare`` run, so all of them are scored on the very same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from lorakit.errors import UsageError


@dataclass(frozen=True)
class Window:
    doc: int  # index of the document the window is cut from
    begin: int  # first token (inclusive) in the document
    end: int  # last token (exclusive)
    first_target: int  # first scored position, relative to ``begin`` (>= 1)

    @property
    def length(self) -> int:
        return self.end - self.begin

    @property
    def shape(self) -> tuple[int, int]:
        """Windows with the same shape can share a batch with no padding at all."""
        return (self.length, self.first_target)


def check_window_settings(max_length: int, stride: int, context: int | None = None) -> None:
    """Refuse settings the documented method does not define, with what to do instead."""
    if max_length < 2:
        raise UsageError(f"--max-length must be at least 2 tokens (got {max_length})", "a window needs one token of context and one to score")
    if stride < 1:
        raise UsageError(f"--stride must be at least 1 token (got {stride})")
    if stride > max_length:
        raise UsageError(
            f"--stride ({stride}) is larger than --max-length ({max_length}): the tokens between windows would never be scored",
            f"use a stride of at most {max_length} (e.g. --stride {max(1, max_length // 2)})",
        )
    if context and max_length > context:
        raise UsageError(
            f"--max-length ({max_length}) exceeds the model's context of {context} tokens",
            f"use --max-length {context} or less",
        )


def plan_document(doc: int, n_tokens: int, max_length: int, stride: int) -> list[Window]:
    """The windows of one document, exactly as the documented loop cuts them."""
    windows: list[Window] = []
    if n_tokens < 2:
        return windows  # nothing to predict: the first token never has a context
    prev_end = 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + max_length, n_tokens)
        trg_len = end - prev_end
        prefix = (end - begin) - trg_len
        windows.append(Window(doc, begin, end, max(prefix, 1)))
        prev_end = end
        if end == n_tokens:
            break
    return windows


def plan_windows(lengths: Sequence[int], max_length: int, stride: int) -> list[Window]:
    check_window_settings(max_length, stride)
    windows: list[Window] = []
    for doc, n_tokens in enumerate(lengths):
        windows.extend(plan_document(doc, n_tokens, max_length, stride))
    return windows


def batches(windows: Sequence[Window], max_windows: int) -> Iterator[list[Window]]:
    """Group windows of one shape (no padding, so no attention mask and no numerical drift).

    Windows keep their document order inside a shape, and batches hold at most ``max_windows``.
    """
    by_shape: dict[tuple[int, int], list[Window]] = {}
    for window in windows:
        by_shape.setdefault(window.shape, []).append(window)
    for shape in sorted(by_shape, key=lambda s: (-s[0], s[1])):
        group = by_shape[shape]
        for start in range(0, len(group), max(1, max_windows)):
            yield group[start : start + max(1, max_windows)]
