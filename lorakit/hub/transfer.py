"""Fetch the selected files into the standard Hugging Face cache, in parallel, and verify each one.

Why the HF cache and not a private folder: files already fetched by transformers, the ``hf`` CLI or an
earlier run are reused without touching the network, ``HF_HUB_OFFLINE=1`` can use them, and a run that
was interrupted keeps every finished file. huggingface_hub writes each file to a temporary name and
renames it when complete, resumes a cut transfer with an HTTP Range request (a few times per file), and
uses Xet storage when the repository and the ``hf_xet`` package allow it. Note: huggingface_hub 2.x
deletes a partial file when its download finally fails, so a file still in flight when the command is
killed starts over on the next run; finished files do not.

Every file is downloaded by commit hash, so all of them come from one snapshot even if the branch moves.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.hub.hub_errors import scrub
from lorakit.hub.integrity import FileHashes, hash_file, mismatch
from lorakit.hub.listing import RemoteFile, RepoSnapshot, storage_folder
from lorakit.hub.progress import DownloadBoard
from lorakit.hub.retry import ATTEMPTS, DownloadCancelled, call_with_retries
from lorakit.hub.settings import HubSettings


class ChecksumError(LorakitError):
    """A file's bytes are not the ones the hub describes."""


@dataclass(frozen=True)
class Fetched:
    remote: RemoteFile
    local: Path  # the file inside the HF cache snapshot
    hashes: FileHashes
    was_cached: bool


def cache_pointer(settings: HubSettings, snapshot: RepoSnapshot, path: str) -> Path:
    return storage_folder(settings, snapshot.repo_id) / "snapshots" / snapshot.commit / path


def purge_cached(pointer: Path) -> None:
    """Remove a bad file from the cache (the snapshot link and its blob) so the next run fetches it again."""
    blob = pointer.resolve() if pointer.is_symlink() else None
    pointer.unlink(missing_ok=True)
    if blob is not None:
        blob.unlink(missing_ok=True)


def _fetch_one(remote: RemoteFile, snapshot: RepoSnapshot, settings: HubSettings, board: DownloadBoard, secrets) -> Fetched:
    from huggingface_hub import hf_hub_download

    from lorakit import __version__

    pointer = cache_pointer(settings, snapshot, remote.path)
    was_cached = pointer.exists()

    def download() -> str:
        return hf_hub_download(
            snapshot.repo_id, remote.path, revision=snapshot.commit, cache_dir=str(settings.cache_dir),
            endpoint=settings.endpoint, token=settings.token_arg, tqdm_class=board.bar_class(remote.path),
            library_name="lorakit", library_version=__version__,
        )

    def on_retry(attempt: int, delay: float, error: BaseException) -> None:
        reason = scrub(" ".join(str(error).split())[:160] or type(error).__name__, secrets)
        board.note(f"{remote.path}: {reason}; retrying in {delay:.1f}s (try {attempt + 1} of {ATTEMPTS})")

    why = None
    for attempt in (1, 2):
        local = Path(call_with_retries(download, on_retry=on_retry, cancelled=board.cancelled))
        hashes = hash_file(local)
        why = mismatch(hashes, remote)
        if why is None:
            board.file_done(remote.path, hashes.size, cached=was_cached)
            return Fetched(remote, local, hashes, was_cached)
        purge_cached(pointer)
        if attempt == 1 and not settings.offline:
            board.note(f"{remote.path}: checksum mismatch ({why}); fetching it again")
            was_cached = False
    raise ChecksumError(
        f"{remote.path} failed its checksum ({why}): the file from {snapshot.repo_id} is corrupted",
        "the bad copy was removed from the cache; run the command again (if it keeps failing, a mirror or proxy alters the file)",
    )


def fetch_all(snapshot: RepoSnapshot, files: list[RemoteFile], settings: HubSettings, board: DownloadBoard, threads: int, secrets=()) -> dict[str, Fetched]:
    """Download (or find in the cache) and verify ``files``; the first failure cancels the rest."""
    results: dict[str, Fetched] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="lorakit-download")
    try:
        pending = {pool.submit(_fetch_one, remote, snapshot, settings, board, secrets) for remote in files}
        while pending:
            done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None and not isinstance(error, DownloadCancelled):
                    raise error
                if error is None:
                    fetched = future.result()
                    results[fetched.remote.path] = fetched
        return results
    except BaseException as error:
        # Stop the other workers at their next chunk (huggingface_hub removes their partial files).
        board.cancelled.set()
        if isinstance(error, concurrent.futures.CancelledError):
            raise LorakitError("download cancelled") from error
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
