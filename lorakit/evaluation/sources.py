"""What ``--dataset`` points at, its texts, and a fingerprint of its content (no torch here).

- a ``.txt`` file (any file that is not JSON): one document;
- a folder: every ``*.txt`` in it, in natural sort order, one document each;
- ``.json`` (a list of objects) or ``.jsonl``/``.ndjson`` (one object a line): one document per
  row, the text taken from ``--text-field`` (default ``text``);
- rows with ``--format NAME|FILE`` (or rows with no text field whose shape a formatter
  recognises): scored like training scores them, on the response part only (see
  :mod:`lorakit.evaluation.documents`).

Documents are scored separately: a window never spans two files or two rows, so a row is never
predicted from an unrelated one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import LorakitError, UsageError
from lorakit.store.rows import parse_rows, read_text

ROW_SUFFIXES = (".json", ".jsonl", ".ndjson")
DEFAULT_TEXT_FIELD = "text"


@dataclass
class TextDocument:
    name: str  # "notes.txt", "line 3"
    text: str


@dataclass
class DatasetRef:
    path: Path
    kind: str  # "text" (one file), "folder", "rows", or "format"
    files: list[Path] = field(default_factory=list)
    text_field: str = DEFAULT_TEXT_FIELD
    text_field_given: bool = False
    format: str | None = None
    add_eos: bool = False
    score_after: str | None = None  # --train-only-after; None: the format's response part; "": whole rows

    def describe(self) -> str:
        if self.kind == "rows":
            return f"{self.path} (field '{self.text_field}')"
        if self.kind == "format":
            return f"{self.path} (format {self.format or 'auto'}, response tokens only)"
        if self.kind == "folder":
            return f"{self.path} ({len(self.files)} .txt files)"
        return str(self.path)

    def options_text(self) -> str:
        """What besides the bytes decides the tokens scored (part of the cache key and log)."""
        if self.kind == "rows":
            return f"field={self.text_field}"
        if self.kind == "format":
            after = "response" if self.score_after is None else repr(self.score_after)
            return f"format={self.format or 'auto'};after={after};add_eos={int(self.add_eos)}"
        return ""

    def fingerprint(self) -> str:
        """SHA-256 of every file's name and bytes, the format file's bytes, and the options."""
        digest = hashlib.sha256()
        digest.update(f"{self.kind}\0{self.options_text()}\0".encode())
        for path in self.files:
            _hash_file(digest, path, path.name)
        if self.kind == "format" and self.format:
            format_path = Path(self.format).expanduser()
            if format_path.is_file():
                _hash_file(digest, format_path, "format")
        return digest.hexdigest()


def _hash_file(digest, path: Path, label: str) -> None:
    digest.update(f"{label}\0{path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def resolve_dataset(path_text: str, text_field: str | None = None, fmt: str | None = None, add_eos: bool = False, score_after: str | None = None) -> DatasetRef:
    from lorakit.hub.dataset_source import TABLE_SUFFIXES, dataset_rows_file

    path = Path(path_text).expanduser().absolute()
    field_name = text_field or DEFAULT_TEXT_FIELD
    if not path.exists() or (path.is_file() and path.suffix.lower() in TABLE_SUFFIXES):
        rows_file = dataset_rows_file(path_text)  # parquet/CSV or a hub dataset -> JSON Lines rows
        path = rows_file.absolute() if rows_file else path
    if not path.exists():
        raise UsageError(f"dataset '{path_text}' not found",
                         "pass a .txt file, a folder of .txt files, a JSON/JSONL/parquet/CSV file, or a hub dataset ORG/NAME[@CONFIG][:SPLIT]")
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".txt"), key=natural_key)
        if not files:
            raise LorakitError(f"dataset folder {path} has no .txt files", "put the texts to score in .txt files there")
        if fmt or text_field or score_after is not None:
            raise UsageError("--format, --text-field and --train-only-after apply to JSON/JSONL rows, not to a folder of .txt files")
        return DatasetRef(path, "folder", files)
    if path.suffix.lower() in ROW_SUFFIXES:
        if text_field and (fmt or score_after is not None):
            raise UsageError("--text-field scores a field as plain text; --format and --train-only-after apply to instruction/chat rows: give one or the other")
        kind = "format" if fmt or score_after is not None else "rows"
        return DatasetRef(path, kind, [path], field_name, bool(text_field), fmt, add_eos, score_after)
    if fmt or text_field or score_after is not None:
        raise UsageError(f"--format, --text-field and --train-only-after apply to JSON/JSONL rows; {path.name} is read as plain text")
    return DatasetRef(path, "text", [path])


def read_text_file(path: Path) -> str:
    return read_text(path, f"dataset file {path}")


def read_rows(path: Path) -> list[tuple[str, object]]:
    """``[(label, row)]`` from a JSON list or JSON Lines; a syntax error names its line."""
    text = read_text_file(path)
    if not text.strip():
        return []
    return parse_rows(text, f"dataset {path}", lines=path.suffix.lower() != ".json")


def row_texts(ref: DatasetRef, rows: list[tuple[str, object]]) -> list[TextDocument]:
    """The ``--text-field`` of every row; a row without it is an error naming the row and its fields."""
    documents = []
    for label, row in rows:
        if not isinstance(row, dict):
            raise LorakitError(f"{label} of {ref.path} is a {type(row).__name__}, expected a JSON object with a '{ref.text_field}' field")
        if ref.text_field not in row:
            fields = ", ".join(sorted(row)) or "none"
            raise UsageError(
                f"{label} of {ref.path} has no field '{ref.text_field}' (its fields: {fields})",
                "pass --text-field NAME, or --format NAME|FILE to score instruction/chat rows on their responses",
            )
        value = row[ref.text_field]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise LorakitError(f"{label} of {ref.path}: field '{ref.text_field}' is a {type(value).__name__}, not text")
        documents.append(TextDocument(label, value))
    return documents


def read_documents(ref: DatasetRef) -> list[TextDocument]:
    """The texts of a plain-text dataset (kinds text, folder, rows); empty ones are kept for counting."""
    if ref.kind == "rows":
        return row_texts(ref, read_rows(ref.path))
    return [TextDocument(path.name, read_text_file(path)) for path in ref.files]


def first_row_lacks_field(ref: DatasetRef) -> dict | None:
    """For auto-detection: the first row when it is an object without the default text field."""
    if ref.kind != "rows" or ref.text_field_given:
        return None
    rows = read_rows(ref.path)
    if rows and isinstance(rows[0][1], dict) and ref.text_field not in rows[0][1]:
        return rows[0][1]
    return None


def empty_dataset_error(ref: DatasetRef) -> LorakitError:
    what = "rows" if ref.kind in ("rows", "format") else "text"
    return LorakitError(f"dataset {ref.describe()} is empty: it has no {what} to score", "point --dataset at a file with text in it")
