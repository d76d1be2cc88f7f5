"""The one reader of JSON rows: a JSON list of rows, or JSON Lines, with errors that name the line.

Training datasets, evaluation datasets and ``generate --input-file`` prompts all come through here,
so a row file that one command reads, every command reads the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from lorakit.errors import LorakitError

LINE_SUFFIXES = (".jsonl", ".ndjson")


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file (a leading byte-order mark is dropped, as editors on Windows write one and
    text-generation-webui reads it); a file in another encoding is one clear line."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise LorakitError(f"{what} is not UTF-8 text (bad byte at offset {error.start})", "convert it to UTF-8") from None


def parse_rows(text: str, what: str, lines: bool = False, error: type[LorakitError] = LorakitError) -> list[tuple[str, object]]:
    """``[(label, row)]``: labels are ``row N`` for a JSON list, ``line N`` for JSON Lines.

    ``lines`` reads the text as JSON Lines directly; otherwise a JSON list is expected, and a text
    that is really JSON Lines (json's "Extra data") is read as lines. Blank lines are skipped.
    """
    if not lines:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as bad:
            if bad.msg != "Extra data":
                raise error(f"{what} is not valid JSON: line {bad.lineno}, column {bad.colno}: {bad.msg}") from None
        else:
            if not isinstance(data, list):
                raise error(f"{what} must be a JSON list of rows (or JSON Lines), not a {type(data).__name__}")
            return [(f"row {number}", row) for number, row in enumerate(data, start=1)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as bad:
                raise error(f"{what} line {number} is not valid JSON: column {bad.colno}: {bad.msg}") from None
    return rows


def read_rows(path: Path, what: str | None = None) -> list[tuple[str, object]]:
    """The rows of a ``.json``/``.jsonl``/``.ndjson`` file (JSON Lines by suffix or by content)."""
    path = Path(path)
    what = what or f"dataset {path}"
    return parse_rows(read_text(path, what), what, lines=path.suffix.lower() in LINE_SUFFIXES)
