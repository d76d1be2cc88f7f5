"""``download_repo`` (list -> select -> check the target -> fetch + verify -> install) and ``check_download``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import AdapterError, LorakitError
from lorakit.hub.install import (
    Existing,
    default_target,
    ensure_disk_space,
    ensure_writable,
    inspect_existing,
    install,
    links_unsupported,
)
from lorakit.hub.integrity import (
    FileCheck,
    check_folder,
    is_verifiable,
    make_record,
    read_record,
)
from lorakit.hub.listing import (
    RemoteFile,
    RepoSnapshot,
    NotInCache,
    cached_snapshot,
    fetch_snapshot,
    record_ref,
)
from lorakit.hub.progress import DownloadBoard
from lorakit.hub.repo_ref import RepoRef
from lorakit.hub.retry import call_with_retries
from lorakit.hub.selection import (
    ADAPTER_CONFIG,
    Selection,
    is_adapter_repo,
    select_files,
)
from lorakit.hub.settings import HubSettings
from lorakit.hub.transfer import cache_pointer, fetch_all
from lorakit.store import home


@dataclass
class DownloadOptions:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    output: Path | None = None
    threads: int = 4
    force: bool = False
    expect_kind: str | None = None  # "adapter" or "model": a repository of the other kind is refused before fetching


@dataclass
class DownloadResult:
    ref: RepoRef
    snapshot: RepoSnapshot
    kind: str
    target: Path
    status: str  # downloaded | up-to-date
    record: dict
    fetched_bytes: int = 0
    adapter_dirs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _snapshot_from_record(ref: RepoRef, output: Path | None) -> RepoSnapshot | None:
    """Offline, a finished lorakit download of ``ref`` describes itself even if the HF cache was cleaned."""
    candidates = [Path(output).expanduser()] if output else [home.loras_dir() / ref.folder_name(), home.models_dir() / ref.folder_name()]
    for folder in candidates:
        record = read_record(folder)
        if record and record.get("repo_id") == ref.repo_id and ref.revision in (record.get("revision"), record.get("commit")):
            files = [RemoteFile(e["path"], e.get("size"), e.get("sha256")) for e in record["files"]]
            files += [RemoteFile(s["path"]) for s in record.get("skipped", []) if isinstance(s, dict) and "path" in s]
            return RepoSnapshot(ref.repo_id, ref.revision, str(record.get("commit")), files, from_cache=True)
    return None


def _list_repo(ref: RepoRef, settings: HubSettings, console, output: Path | None) -> RepoSnapshot:
    if settings.offline:
        try:
            return cached_snapshot(ref, settings)
        except LorakitError:
            snapshot = _snapshot_from_record(ref, output)
            if snapshot is None:
                raise
            return snapshot

    def on_retry(attempt, delay, error):
        console.print(f"listing {ref.repo_id}: {type(error).__name__}; retrying in {delay:.1f}s", markup=False)

    return call_with_retries(lambda: fetch_snapshot(ref, settings), on_retry=on_retry)


def _adapter_folders(selection: Selection) -> list[str]:
    """Folders (relative, '' for the root) of the download that hold an adapter config."""
    return sorted(f.path[: -len(ADAPTER_CONFIG)].rstrip("/") for f in selection.files if f.path == ADAPTER_CONFIG or f.path.endswith("/" + ADAPTER_CONFIG))


def _validator(selection: Selection, target: Path, warnings: list[str]):
    """Check each downloaded adapter (config readable, weights present, non-empty) before it is put in place."""
    from lorakit.store.adapters import PICKLE_FILE, SAFETENSORS_FILE, read_adapter

    paths = {f.path for f in selection.files}

    def validate(staging: Path) -> None:
        for folder in _adapter_folders(selection):
            prefix = f"{folder}/" if folder else ""
            try:
                if prefix + SAFETENSORS_FILE in paths:
                    read_adapter(staging / folder)
                elif prefix + PICKLE_FILE in paths:
                    if (staging / folder / PICKLE_FILE).stat().st_size == 0:
                        raise AdapterError(f"the adapter in '{staging / folder}' has an empty {PICKLE_FILE}")
                    warnings.append(f"{prefix}{PICKLE_FILE} is a pickle file: lorakit loads it only with --allow-pickle")
                else:
                    warnings.append(f"no adapter weights were downloaded for '{prefix or './'}' (filtered out by --include/--exclude?)")
            except AdapterError as error:
                message = error.message.replace(str(staging), str(target))
                raise AdapterError(f"the downloaded adapter is not usable: {message}", error.hint) from error

    return validate


def download_repo(ref: RepoRef, options: DownloadOptions, settings: HubSettings, console) -> DownloadResult:
    snapshot = _list_repo(ref, settings, console, options.output)
    selection = select_files(snapshot.files, options.include, options.exclude)
    if not selection.files:
        names = ", ".join(sorted(snapshot.paths())[:8]) or "no files"
        patterns = " ".join([f"--include {p}" for p in options.include] + [f"--exclude {p}" for p in options.exclude])
        raise LorakitError(f"nothing to download from {ref.display()}: no file matches {patterns or 'the patterns'}", f"the repository has: {names}")
    kind = "adapter" if is_adapter_repo(snapshot.files) else "model"
    if options.expect_kind and kind != options.expect_kind:
        wanted = "an adapter (no adapter_config.json)" if options.expect_kind == "adapter" else "a model (it holds adapter_config.json)"
        other = "--lora" if options.expect_kind == "model" else "MODEL"
        raise LorakitError(f"{ref.display()} is not {wanted}", f"pass it as {other} instead")
    target = Path(options.output).expanduser() if options.output else default_target(ref, kind)
    if target.exists() and not target.is_dir():
        raise LorakitError(f"{target} is a file, not a folder", "choose another --output")
    if options.force and target.is_dir() and any(target.iterdir()):
        existing = Existing("different", "--force")  # no need to hash what will be replaced
    else:
        existing = inspect_existing(target, snapshot, selection.files)
    if existing.state == "same":
        return DownloadResult(ref, snapshot, kind, target, "up-to-date", read_record(target) or {}, adapter_dirs=[target / d for d in _adapter_folders(selection)])
    if existing.state == "different" and not options.force:
        raise LorakitError(
            f"{target} already exists and {existing.reason}",
            "pass --force to replace it (the old folder goes only once the new one is complete), or choose another --output",
        )
    if settings.offline:
        missing = [f.path for f in selection.files if not cache_pointer(settings, snapshot, f.path).exists()]
        if missing and existing.state == "stale":
            raise NotInCache(f"{target} is a download of {ref.display()} but {existing.reason}", "unset HF_HUB_OFFLINE to fetch them again")
        if missing:
            raise NotInCache(
                f"HF_HUB_OFFLINE=1 and {len(missing)} of {len(selection.files)} files of {ref.display()} are not in the Hugging Face cache: {', '.join(missing[:5])}",
                "unset HF_HUB_OFFLINE to download them",
            )

    ensure_writable(target)
    no_links = links_unsupported(target.parent)
    uncached = sum(f.size or 0 for f in selection.files if not cache_pointer(settings, snapshot, f.path).exists())
    # One copy on disk: linked files cost the target nothing; copies (links impossible) cost them all.
    ensure_disk_space([(settings.cache_dir, uncached), (target.parent, selection.total_size if no_links else 0)])

    sizes = {f.path: f.size for f in selection.files}
    with DownloadBoard(sizes, console) as board:
        for note in snapshot.notes:
            board.note(f"note: {note}")
        fetched = fetch_all(snapshot, selection.files, settings, board, options.threads, settings.secrets)
    record_ref(settings, snapshot)

    warnings: list[str] = []
    if no_links:
        warnings.append(f"symbolic links cannot be made in {target.parent} ({no_links}): the files were copied out of the HF cache, so they take disk space twice")
    record = make_record(
        repo_id=ref.repo_id, revision=ref.revision, commit=snapshot.commit, endpoint=_public_endpoint(settings.endpoint),
        kind=kind, files={p: f.hashes for p, f in fetched.items()}, remote={p: f.remote for p, f in fetched.items()},
        skipped=selection.skipped, offline=settings.offline,
    )
    validate = _validator(selection, target, warnings) if kind == "adapter" else None
    record["storage"] = "copied from the HF cache" if no_links else "links into the HF cache"
    install(target, {p: f.local for p, f in fetched.items()}, record, replace=existing.state != "absent", validate=validate, link=not no_links)
    unverified = sorted(p for p, f in fetched.items() if not is_verifiable(f.remote))
    if unverified:
        warnings.append(f"the hub gave no checksum for {len(unverified)} files ({', '.join(unverified[:3])}): their sha256 is recorded but was not checked")
    if kind == "model" and "config.json" not in {f.path for f in selection.files}:
        warnings.append("no config.json was downloaded: lorakit cannot load this folder as a Hugging Face model")
    fetched_bytes = sum(f.hashes.size for f in fetched.values() if not f.was_cached)
    return DownloadResult(ref, snapshot, kind, target, "downloaded", record, fetched_bytes, [target / d for d in _adapter_folders(selection)], warnings)


def _public_endpoint(endpoint: str) -> str:
    """The endpoint without any credentials a mirror URL might carry."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(endpoint)
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))) if parts.hostname else endpoint


def find_download(ref: RepoRef, output: Path | None) -> Path:
    """The folder ``--check`` verifies: ``--output``, else the adapter or model folder named after the repo."""
    candidates = [Path(output).expanduser()] if output else [home.loras_dir() / ref.folder_name(), home.models_dir() / ref.folder_name()]
    for folder in candidates:
        if folder.is_dir():
            return folder
    looked = " or ".join(str(c) for c in candidates)
    raise LorakitError(f"no download of {ref.display()} to check: {looked} does not exist", "download it first, or pass the folder with --output")


def check_download(ref: RepoRef, output: Path | None, threads: int = 4) -> tuple[Path, dict, list[FileCheck]]:
    folder = find_download(ref, output)
    record = read_record(folder)
    if record is None:
        raise LorakitError(f"{folder} has no readable lorakit_download.json, so there is nothing to check it against", "download it again with --force")
    if record.get("repo_id") != ref.repo_id:
        raise LorakitError(f"{folder} holds a download of {record.get('repo_id')}, not {ref.repo_id}")
    return folder, record, check_folder(folder, record, threads)
