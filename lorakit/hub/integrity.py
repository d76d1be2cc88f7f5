"""Checksums, the ``lorakit_download.json`` record beside the files, and ``--check``.

LFS files (weights) are checked against the sha256 the hub publishes; files kept in git itself (configs,
tokenizers) against their git blob id, which is the sha1 of ``b"blob <size>\\0" + content``. Both are
computed in one read. The record stores every file's size and sha256, so ``--check`` needs no network.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lorakit.hub.listing import RemoteFile
from lorakit.hub.selection import RECORD_FILE

CHUNK = 1 << 20
RECORD_FORMAT = 1


@dataclass(frozen=True)
class FileHashes:
    size: int
    sha256: str
    git_blob_id: str


def hash_file(path: Path) -> FileHashes:
    size = os.path.getsize(path)
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {size}\0".encode())
    read = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            sha256.update(chunk)
            git.update(chunk)
            read += len(chunk)
    return FileHashes(read, sha256.hexdigest(), git.hexdigest())


def mismatch(actual: FileHashes, expected: RemoteFile) -> str | None:
    """Why ``actual`` is not the file the hub described, or None when it is (or nothing can be said)."""
    if expected.size is not None and actual.size != expected.size:
        return f"{actual.size} bytes instead of {expected.size}"
    if expected.sha256 and actual.sha256 != expected.sha256:
        return f"sha256 {actual.sha256[:12]}... instead of {expected.sha256[:12]}..."
    if not expected.sha256 and expected.blob_id and actual.git_blob_id != expected.blob_id:
        return f"git blob id {actual.git_blob_id[:12]}... instead of {expected.blob_id[:12]}..."
    return None


def is_verifiable(expected: RemoteFile) -> bool:
    return bool(expected.sha256 or expected.blob_id)


def write_record(folder: Path, data: dict) -> None:
    (folder / RECORD_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def make_record(*, repo_id, revision, commit, endpoint, kind, files: dict[str, FileHashes], remote: dict[str, RemoteFile], skipped, offline) -> dict:
    from lorakit import __version__

    return {
        "format": RECORD_FORMAT,
        "tool": f"lorakit {__version__}",
        "repo_id": repo_id,
        "revision": revision,
        "commit": commit,
        "endpoint": endpoint,
        "kind": kind,
        "downloaded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "from_cache_offline": offline,
        "total_size": sum(h.size for h in files.values()),
        "files": [
            {"path": path, "size": h.size, "sha256": h.sha256, "lfs": remote[path].lfs, "verified_against_hub": is_verifiable(remote[path])}
            for path, h in sorted(files.items())
        ],
        "skipped": [{"path": path, "reason": why} for path, why in skipped],
    }


def read_record(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    return data


def hub_origin(model_folder: Path) -> tuple[str, str | None] | None:
    """(repo id, commit) when ``model_folder`` is a ``lorakit download`` of a hub repository."""
    record = read_record(Path(model_folder))
    repo_id = record.get("repo_id") if record else None
    return (repo_id, record.get("commit")) if isinstance(repo_id, str) and repo_id else None


@dataclass(frozen=True)
class FileCheck:
    path: str
    status: str  # ok | changed | missing | extra
    detail: str = ""


def converted_entries(folder: Path) -> dict[str, dict]:
    """Files ``lorakit convert`` rewrote or added in a download folder ({path: entry}): they are checked
    against the conversion's record instead of the hub's."""
    from lorakit.store.legacy import CONVERT_RECORD

    try:
        data = json.loads((Path(folder) / CONVERT_RECORD).read_text(encoding="utf-8"))
        return {e["path"]: e for e in data.get("files", []) if isinstance(e, dict) and "path" in e}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def effective_entries(folder: Path, record: dict) -> list[dict]:
    """The record's files as they should be now: the hub's, overridden by what a conversion wrote."""
    entries = {e["path"]: e for e in record["files"] if isinstance(e, dict) and "path" in e}
    entries.update(converted_entries(folder))
    return [entries[path] for path in sorted(entries)]


def _check_one(folder: Path, entry: dict) -> FileCheck:
    path = folder / entry["path"]
    if path.is_symlink() and not path.exists():
        return FileCheck(entry["path"], "missing", "its link points into the HF cache, which no longer holds it")
    if not path.is_file():
        return FileCheck(entry["path"], "missing", "no longer there")
    why = mismatch(hash_file(path), RemoteFile(entry["path"], entry.get("size"), entry.get("sha256")))
    return FileCheck(entry["path"], "changed", why) if why else FileCheck(entry["path"], "ok")


def check_folder(folder: Path, record: dict, threads: int = 4) -> list[FileCheck]:
    """Compare every recorded file with what is on disk; files the record does not know are 'extra'."""
    from lorakit.store.legacy import CONVERT_RECORD

    entries = effective_entries(folder, record)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # hashlib releases the GIL on large reads
        results = list(pool.map(lambda e: _check_one(folder, e), entries))
    known = {e["path"] for e in entries} | {RECORD_FILE, CONVERT_RECORD}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            relative = (Path(root) / name).relative_to(folder).as_posix()
            if relative not in known:
                results.append(FileCheck(relative, "extra", "not part of the download"))
    return sorted(results, key=lambda r: r.path)
