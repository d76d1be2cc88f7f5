"""The formatter interface that ``register_formatters`` plugins implement (exported by ``lorakit.api``).

A formatter turns one dataset row (a dict) into text plus the character spans of that text the
loss is computed on. Tokenization and label masking happen later, in one place
(:mod:`lorakit.training.masking`), so every formatter gets the same straddle-safe token masking.

A plugin registers formatters like this::

    import lorakit
    from lorakit.api import Rendered, RowError

    class Shouting:
        name = "shout"
        description = "instruction/output rows, answers in capitals"

        def accepts(self, row):
            return {"instruction", "output"} <= set(row)

        def render(self, row, tokenizer):
            if not row.get("output"):
                raise RowError("has no 'output'")
            prompt = f"Q: {row['instruction']}\\nA: "
            return Rendered(prompt + row["output"].upper(), trained_spans=[(len(prompt), None)])

    @lorakit.hookimpl
    def register_formatters(register):
        register(Shouting())

Choosing a formatter for ``--format`` lives in :mod:`lorakit.training.formatter_choice`. This module
is imported at CLI start-up (by the built-in formatter plugin): no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class RowError(ValueError):
    """One row cannot be rendered; the message says why (the caller adds the row number)."""


@dataclass
class Rendered:
    """The text of one example and which parts of it are trained.

    ``trained_spans`` holds ``(start, end)`` character offsets into ``text`` (``end=None`` means the
    end of the text). ``None`` means the whole text is trained (``--train-only-after`` may still cut
    it). An empty list means nothing is trained (the example is then skipped and counted).
    """

    text: str
    trained_spans: list[tuple[int, int | None]] | None = None

    def spans(self) -> list[tuple[int, int]]:
        if self.trained_spans is None:
            return [(0, len(self.text))]
        return [(start, len(self.text) if end is None else end) for start, end in self.trained_spans]


@runtime_checkable
class Formatter(Protocol):
    """What ``register(formatter)`` expects from a plugin."""

    name: str  # what --format NAME selects
    description: str  # one line for listings

    def accepts(self, row: dict) -> bool:
        """Whether this formatter can render a row of this shape (used to auto-detect the format)."""

    def render(self, row: dict, tokenizer: Any) -> Rendered:
        """Render one row; raise :class:`RowError` with a short reason when it cannot."""
