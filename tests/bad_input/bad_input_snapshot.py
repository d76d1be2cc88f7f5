"""Byte-for-byte snapshots of folders, to prove a failed command changed nothing and left nothing.

``snapshot(roots)`` maps every entry under each root (files by sha256 of their bytes, folders, and
symbolic links by target, never followed) to a fingerprint; ``changes(before, after)`` lists what was
added, removed or modified, so a temporary file, a lock or an empty folder left behind is named.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _entry(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if path.is_dir():
        return "dir"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"file:{digest.hexdigest()}:{path.stat().st_mode & 0o777:o}"


def snapshot(roots) -> dict[str, str]:
    state: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        if not root.exists() and not root.is_symlink():
            state[str(root)] = "absent"
            continue
        state[str(root)] = _entry(root)
        if root.is_symlink() or not root.is_dir():
            continue
        for folder, dirs, files in os.walk(root, followlinks=False):
            for name in dirs + files:
                path = Path(folder) / name
                state[str(path)] = _entry(path)
    return state


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    found = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, "absent"), after.get(path, "absent")
        if old != new:
            what = "added" if old == "absent" else "removed" if new == "absent" else "changed"
            found.append(f"{what}: {path}")
    return found
