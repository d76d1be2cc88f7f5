"""The files of a repository at one commit, with the sizes and hashes the hub publishes.

Online: ``HfApi.model_info(files_metadata=True)`` resolves the revision to a commit and lists every file
with its size, git blob id and, for LFS files, the sha256 of the content. The listing is kept in
``$LORAKIT_HOME/cache/hub-listings`` so an offline run can still verify the cached files completely.
Offline (``HF_HUB_OFFLINE=1``): the commit comes from the HF cache's ``refs/``, the file list from the
kept listing or, failing that, from the cached snapshot itself (blob names are the hub's ETags: the
sha256 for LFS files, the git blob id for the others).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.hub.repo_ref import RepoRef
from lorakit.hub.settings import HubSettings
from lorakit.store import home
from lorakit.store.atomic import atomic_write_text

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None = None
    sha256: str | None = None  # LFS files: the hub's checksum of the content
    blob_id: str | None = None  # git object id; verifies files stored in git itself

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None


@dataclass
class RepoSnapshot:
    repo_id: str
    revision: str
    commit: str
    files: list[RemoteFile]
    from_cache: bool = False
    listing_complete: bool = True
    notes: list[str] = field(default_factory=list)

    def paths(self) -> set[str]:
        return {f.path for f in self.files}


def storage_folder(settings: HubSettings, repo_id: str) -> Path:
    """The repository's folder in the standard HF cache (``models--org--name``)."""
    return settings.cache_dir / ("models--" + repo_id.replace("/", "--"))


def _listing_path(repo_id: str, commit: str) -> Path:
    return home.cache_dir() / "hub-listings" / repo_id.replace("/", "--") / f"{commit}.json"


def _save_listing(snapshot: RepoSnapshot) -> None:
    try:
        data = {"repo_id": snapshot.repo_id, "commit": snapshot.commit, "files": [asdict(f) for f in snapshot.files]}
        atomic_write_text(_listing_path(snapshot.repo_id, snapshot.commit), json.dumps(data, indent=1) + "\n")
    except OSError:
        pass  # only an aid for later offline runs


def _load_listing(repo_id: str, commit: str) -> list[RemoteFile] | None:
    try:
        data = json.loads(_listing_path(repo_id, commit).read_text(encoding="utf-8"))
        return [RemoteFile(**entry) for entry in data["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fetch_snapshot(ref: RepoRef, settings: HubSettings) -> RepoSnapshot:
    from huggingface_hub import HfApi

    from lorakit import __version__

    api = HfApi(endpoint=settings.endpoint, token=settings.token_arg, library_name="lorakit", library_version=__version__)
    info = api.model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
    if not info.sha:
        raise LorakitError(f"{settings.endpoint} did not say which commit '{ref.revision}' of {ref.repo_id} is", "is HF_ENDPOINT a Hugging Face hub?")
    files = [
        RemoteFile(s.rfilename, s.size if s.size is not None else (s.lfs.size if s.lfs else None), s.lfs.sha256 if s.lfs else None, s.blob_id)
        for s in (info.siblings or [])
    ]
    snapshot = RepoSnapshot(ref.repo_id, ref.revision, info.sha, files)
    _save_listing(snapshot)
    return snapshot


class NotInCache(LorakitError):
    """Offline, and the cache lacks what was asked for (callers may name what it holds instead)."""


def _offline_error(ref: RepoRef, settings: HubSettings, what: str) -> LorakitError:
    return NotInCache(
        f"HF_HUB_OFFLINE=1 and {ref.display()} is not in the Hugging Face cache at {settings.cache_dir} ({what})",
        "unset HF_HUB_OFFLINE to download it, or set HF_HUB_CACHE to the cache that holds it",
    )


def cached_commit(ref: RepoRef, settings: HubSettings) -> str | None:
    storage = storage_folder(settings, ref.repo_id)
    if ref.is_commit:
        return ref.revision if (storage / "snapshots" / ref.revision).is_dir() else None
    try:
        commit = (storage / "refs" / ref.revision).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if (storage / "snapshots" / commit).is_dir() else None


def _files_in_snapshot(folder: Path) -> list[RemoteFile]:
    files = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if not path.exists():
                continue  # a dangling pointer: the blob was deleted from the cache
            relative = path.relative_to(folder).as_posix()
            etag = Path(os.readlink(path)).name if path.is_symlink() else ""
            files.append(RemoteFile(relative, path.stat().st_size, etag if _SHA256.match(etag) else None, etag if _SHA1.match(etag) else None))
    return sorted(files, key=lambda f: f.path)


def cached_snapshot(ref: RepoRef, settings: HubSettings) -> RepoSnapshot:
    """What the HF cache holds for ``ref`` (offline mode)."""
    commit = cached_commit(ref, settings)
    if commit is None:
        raise _offline_error(ref, settings, f"no cached revision '{ref.revision}'")
    listing = _load_listing(ref.repo_id, commit)
    if listing is not None:
        return RepoSnapshot(ref.repo_id, ref.revision, commit, listing, from_cache=True)
    files = _files_in_snapshot(storage_folder(settings, ref.repo_id) / "snapshots" / commit)
    if not files:
        raise _offline_error(ref, settings, "its cached snapshot is empty")
    note = "the full file list is unknown offline (this revision was not fetched by lorakit): using the cached files"
    return RepoSnapshot(ref.repo_id, ref.revision, commit, files, from_cache=True, listing_complete=False, notes=[note])


def record_ref(settings: HubSettings, snapshot: RepoSnapshot) -> None:
    """Point ``refs/<branch>`` at the commit, as the library does, so offline runs (and transformers) find it.

    lorakit downloads every file by commit hash (one consistent snapshot even if the branch moves), and the
    library only records a ref when it is given a branch name.
    """
    if _SHA1.match(snapshot.revision) or snapshot.from_cache:
        return
    try:
        atomic_write_text(storage_folder(settings, snapshot.repo_id) / "refs" / snapshot.revision, snapshot.commit)
    except OSError:
        pass  # a read-only cache still serves the files
