"""The evaluations log (``$LORAKIT_HOME/evaluations.csv``) and the result cache.

Every computed result is appended to the log: date, model, configuration, LoRA folders and
weights, each adapter's content hash, dataset and its hash, max length, stride, the numbers, and
the optional ``--comment``. The log is rewritten under a temporary name and renamed, under a
lock, so a crash or a parallel run never leaves it half-written.

The cache (``$LORAKIT_HOME/cache/eval/<key>.json``) is keyed by everything that decides the
numbers: the model (small files by content, weight files by name, size and modification time,
so a multi-GB model is not re-read), loader, device, precision and quantization, each LoRA's
content hash and weight, the dataset's content hash and reading options, max length and stride.
An identical request is answered from it without loading the model; ``--no-cache`` recomputes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from lorakit.store import home
from lorakit.store.atomic import atomic_write_text, file_lock
from lorakit.store.file_hash import file_sha256

CACHE_VERSION = 1
FULL_HASH_LIMIT = 16 * (1 << 20)  # model files up to this size are hashed by content
LOG_COLUMNS = (
    "date", "model", "configuration", "loras", "adapter_hash", "dataset", "dataset_hash", "dataset_options",
    "max_length", "stride", "perplexity", "mean_nll", "tokens", "loader", "device", "dtype", "seconds", "comment",
)


def log_path() -> Path:
    return home.home() / "evaluations.csv"


def cache_folder() -> Path:
    return home.cache_dir() / "eval"


def adapter_hash(folder: Path) -> str:
    """SHA-256 over the adapter's config and weight files (names and bytes)."""
    digest = hashlib.sha256()
    files = [p for p in sorted(Path(folder).iterdir()) if p.is_file() and (p.name == "adapter_config.json" or p.suffix in (".safetensors", ".bin"))]
    for path in files:
        digest.update(f"{path.name}\0".encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def model_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        relative = path.relative_to(folder).as_posix()
        if stat.st_size <= FULL_HASH_LIMIT:
            digest.update(f"{relative}\0{file_sha256(path)}\0".encode())
        else:
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def cache_key(parts: dict) -> str:
    text = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cache_get(key: str) -> dict | None:
    path = cache_folder() / f"{key}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # a missing or damaged entry is simply recomputed


def cache_put(key: str, row: dict) -> None:
    atomic_write_text(cache_folder() / f"{key}.json", json.dumps(row, indent=1, sort_keys=True))


def log_append(records: list[dict]) -> Path:
    """Append rows (dicts with LOG_COLUMNS keys) to the log, atomically."""
    path = log_path()
    with file_lock(path.with_name(".evaluations.lock")):
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, extrasaction="ignore", lineterminator="\n")
        if not existing.strip():
            writer.writeheader()
        elif not existing.endswith("\n"):
            buffer.write("\n")
        for record in records:
            writer.writerow({column: record.get(column, "") for column in LOG_COLUMNS})
        atomic_write_text(path, existing + buffer.getvalue())
    return path


def log_read() -> list[dict]:
    path = log_path()
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def rows_for_adapter(folder: Path) -> list[dict]:
    """The log's rows that evaluated exactly this adapter (alone, by content hash), oldest first."""
    try:
        digest = adapter_hash(folder)[:16]
        return [row for row in log_read() if row.get("adapter_hash") == digest]
    except (OSError, ValueError, csv.Error):
        return []  # the card then says no evaluation was recorded
