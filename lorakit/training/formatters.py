"""The formatter interface that ``register_formatters`` plugins implement, and the registry lookup.

A formatter turns one dataset row (a dict) into text plus the character spans of that text the
loss is computed on. Tokenization and label masking happen later, in one place
(:mod:`lorakit.training.masking`), so every formatter gets the same straddle-safe token masking.

A plugin registers formatters like this::

    import lorakit
    from lorakit.training.formatters import Rendered, RowError

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

This module is imported at CLI start-up (by the built-in formatter plugin): no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lorakit.errors import LorakitError, UsageError


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


def available_formatters(pm=None) -> dict[str, Formatter]:
    """Every registered formatter by name (built-ins plus plugins)."""
    from lorakit.plugin_manager import call_each

    if pm is None:
        from lorakit.cli import plugin_manager

        pm = plugin_manager()
    found: dict[str, Formatter] = {}

    def register(formatter) -> None:
        name = getattr(formatter, "name", None)
        if not name or not callable(getattr(formatter, "render", None)):
            raise TypeError(f"formatter {formatter!r} needs a 'name' and a render(row, tokenizer) method")
        found[name] = formatter

    call_each(pm, "register_formatters", register=register)
    return found


def looks_like_path(value: str) -> bool:
    return value.endswith(".json") or "/" in value or "\\" in value


def resolve_formatter(format_arg: str | None, first_row: dict | None, pm=None) -> Formatter:
    """``--format`` value (a registered name, a format-file path, or ``None`` for auto) -> formatter."""
    if format_arg and looks_like_path(format_arg):
        from lorakit.training.formats import FormatFileFormatter

        path = Path(format_arg).expanduser()
        if not path.is_file():
            raise UsageError(f"format file '{format_arg}' not found", "pass a format name or an existing .json format file")
        return FormatFileFormatter.from_path(path)
    formatters = available_formatters(pm)
    if format_arg:
        if format_arg not in formatters:
            names = ", ".join(sorted(formatters))
            raise UsageError(f"unknown format '{format_arg}'", f"use one of: {names}, or a path to a format .json file")
        return formatters[format_arg]
    return _auto_formatter(formatters, first_row or {})


def _auto_formatter(formatters: dict[str, Formatter], row: dict) -> Formatter:
    # Chat rows first (their keys are unambiguous), then the Alpaca shape, then any plugin that accepts.
    for name in ("chat", "alpaca"):
        if name in formatters and formatters[name].accepts(row):
            return formatters[name]
    for name in sorted(formatters):
        formatter = formatters[name]
        if callable(getattr(formatter, "accepts", None)) and formatter.accepts(row):
            return formatter
    keys = ", ".join(sorted(row)) or "none"
    raise LorakitError(
        f"cannot tell the dataset's format from its first row (keys: {keys})",
        "pass --format NAME (see the shipped formats) or --format path/to/format.json",
    )
