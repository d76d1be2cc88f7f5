"""``--format``: a registered formatter's name, a format file's path, or auto-detection from a row."""

from __future__ import annotations

from pathlib import Path

from lorakit.errors import LorakitError, UsageError
from lorakit.plugin.host import registered_formatters
from lorakit.training.formats import FormatFileFormatter
from lorakit.training.formatters import Formatter


def available_formatters(pm=None) -> dict[str, Formatter]:
    """Every registered formatter by name (built-ins plus plugins)."""
    return registered_formatters(pm)


def looks_like_path(value: str) -> bool:
    return value.endswith(".json") or "/" in value or "\\" in value


def resolve_formatter(format_arg: str | None, first_row: dict | None, pm=None) -> Formatter:
    """``--format`` value (a registered name, a format-file path, or ``None`` for auto) -> formatter."""
    if format_arg and looks_like_path(format_arg):
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
