"""Where a download lands, what is already there, and putting the verified files in place atomically.

One copy on disk: the target folder (``models/ORG_NAME``, ``loras/ORG_NAME``, the webui's layout) holds
a symbolic link per file into the HF cache snapshot, plus lorakit's own record (a real file). The
links are made in a temporary folder beside the target, the record is written, and the folder is
renamed into place: the target never holds a partial download, and an existing folder is replaced only
after the new one is complete. The cached files behind the links lose their write permission, so a tool
that rewrites a file in place fails loudly instead of changing the cache's copy. Where the file system cannot link (some network or Windows drives),
the files are copied instead and the download says so. lorakit itself never writes through these
links (it writes to a temporary name and renames, which replaces the link, not the cached file);
``--check`` re-hashes through them, so a file changed in the cache is still caught.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.hub.hub_errors import disk_error
from lorakit.hub.integrity import converted_entries, hash_file, mismatch, read_record, write_record
from lorakit.hub.listing import RemoteFile, RepoSnapshot
from lorakit.hub.progress import human_size
from lorakit.hub.repo_ref import RepoRef
from lorakit.hub.selection import RECORD_FILE
from lorakit.store import home
from lorakit.store.atomic import atomic_folder
from lorakit.store.legacy import CONVERT_RECORD

DISK_MARGIN = 16 * 1024 * 1024  # keep a little room for the record and the file system's own needs


def default_target(ref: RepoRef, kind: str) -> Path:
    return (home.loras_dir() if kind == "adapter" else home.models_dir()) / ref.folder_name()


@dataclass(frozen=True)
class Existing:
    state: str  # absent | empty | same | stale (our links dangle) | different
    reason: str = ""


def inspect_existing(target: Path, snapshot: RepoSnapshot, files: list[RemoteFile]) -> Existing:
    """Is ``target`` free, already this exact download (every file re-hashed), or something else?"""
    if not target.exists() and not target.is_symlink():
        return Existing("absent")
    if not target.is_dir():
        return Existing("different", "it is a file, not a folder")
    if not any(target.iterdir()):
        return Existing("empty")
    record = read_record(target)
    if record is None:
        return Existing("different", f"it was not made by lorakit download (no {RECORD_FILE})")
    if record.get("repo_id") != snapshot.repo_id:
        return Existing("different", f"it holds {record.get('repo_id')}")
    if record.get("commit") != snapshot.commit:
        return Existing("different", f"it holds commit {str(record.get('commit'))[:12]}, {snapshot.revision} is {snapshot.commit[:12]}")
    recorded = {e.get("path") for e in record["files"] if isinstance(e, dict)}
    wanted = {f.path for f in files}
    if recorded != wanted:
        return Existing("different", "it holds another selection of files (--include/--exclude)")
    converted = converted_entries(target)  # what `lorakit convert` wrote is part of this download now
    on_disk = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file() or p.is_symlink()}
    on_disk -= {RECORD_FILE, CONVERT_RECORD} | (set(converted) - wanted)
    if on_disk != wanted:
        return Existing("different", f"it has files that are not part of the download ({', '.join(sorted(on_disk - wanted)[:3])})")
    dangling = sorted(p for p in wanted if (target / p).is_symlink() and not (target / p).exists())
    if dangling:
        # lorakit's own download of this very commit, whose cached files were deleted: safe to refill.
        return Existing("stale", f"its links into the HF cache point at files the cache no longer holds ({', '.join(dangling[:3])})")
    by_path = {e["path"]: e for e in record["files"]}
    by_path.update(converted)
    for remote in files:
        expected = RemoteFile(remote.path, by_path[remote.path].get("size"), by_path[remote.path].get("sha256"))
        why = mismatch(hash_file(target / remote.path), expected)
        if why:
            return Existing("different", f"{remote.path} was changed ({why})")
    return Existing("same")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def ensure_writable(target: Path) -> None:
    """Fail before downloading anything if the target's parent cannot be created or written."""
    parent = target.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent)
        os.rmdir(probe)
    except OSError as error:
        raise disk_error(error, parent) from error


def links_unsupported(folder: Path) -> str | None:
    """Why symbolic links cannot be made in ``folder`` (None when they can): decides link or copy."""
    try:
        probe = Path(tempfile.mkdtemp(prefix=".lorakit-link-probe-", dir=folder))
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    try:
        (probe / "file").write_bytes(b"")
        os.symlink(probe / "file", probe / "link")
        return None
    except (OSError, NotImplementedError) as error:
        return f"{type(error).__name__}: {error.strerror or error}" if isinstance(error, OSError) else str(error)
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def ensure_disk_space(needs: list[tuple[Path, int]]) -> None:
    """``needs``: (folder, bytes) pairs; folders on the same device add up."""
    by_device: dict[int, tuple[Path, int]] = {}
    for folder, amount in needs:
        anchor = _existing_ancestor(folder)
        device = anchor.stat().st_dev
        seen = by_device.get(device, (anchor, 0))
        by_device[device] = (seen[0], seen[1] + amount)
    for anchor, amount in by_device.values():
        free = shutil.disk_usage(anchor).free
        if amount and free < amount + DISK_MARGIN:
            raise LorakitError(
                f"not enough disk space: the download needs {human_size(amount)} on the device holding {anchor}, {human_size(free)} is free",
                "free some space, or choose another --output (or HF_HUB_CACHE for the cache)",
            )


def _read_only(path: Path) -> None:
    """Drop write permission on the cached file a link points at: a tool that rewrites a weight file in
    place (``save_pretrained`` into the same folder) then fails instead of silently changing the cache."""
    try:
        blob = path.resolve()
        blob.chmod(blob.stat().st_mode & ~0o222)
    except OSError:
        pass  # a cache we may not chmod still serves the files


def install(target: Path, sources: dict[str, Path], record: dict, replace: bool, validate=None, link: bool = True) -> None:
    """Link (or copy) ``sources`` ({path in repo: file in the HF cache}) into a temporary folder, write
    the record, rename into ``target``."""
    try:
        with atomic_folder(target, replace=replace) as staging:
            for relative, source in sorted(sources.items()):
                destination = staging / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                if link:
                    os.symlink(Path(source).absolute(), destination)
                    _read_only(Path(source))
                else:
                    shutil.copyfile(source, destination)
            write_record(staging, record)
            if validate is not None:
                validate(staging)
    except FileExistsError as error:
        raise LorakitError(f"{target} appeared while downloading", "run the command again") from error
    except LorakitError:
        raise
    except OSError as error:
        raise disk_error(error, target) from error
