"""Hub ids wherever a command takes MODEL or ``--lora``: ``ORG/NAME[:REVISION]`` -> a folder on disk.

Local things win: a folder path, a name under ``$LORAKIT_HOME/models`` (or ``loras``), a ``.gguf``.
Only when nothing local matches and the text is a valid repository id is the hub asked, through the
same download store as ``lorakit download`` (progress on stderr, checksums, one copy on disk). A repo
downloaded once is used from then on without the network; ``lorakit download`` updates a branch.
Offline (``HF_HUB_OFFLINE=1``) or unreachable, one line names what is cached and ``lorakit download``.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.errors import AdapterError, LorakitError, ModelNotFound
from lorakit.hub.repo_ref import RepoRef, parse_repo_ref
from lorakit.store import home

KIND_WORDS = {"model": "a model", "adapter": "an adapter"}


def hub_ref(text: str | None) -> RepoRef | None:
    """``text`` as a repository reference, or None when it is not one (a path, a plain name, a URL)."""
    if not text or text.startswith(("http://", "https://", ".", "/", "~")) or text.count("/") != 1:
        return None
    try:
        return parse_repo_ref(text)
    except LorakitError:
        return None


def resolve_model(spec: str | None, quiet: bool = False) -> Path:
    """MODEL -> a Hugging Face folder: what ``store.models.resolve_model`` finds, else a hub id fetched once."""
    from lorakit.store.models import is_hf_folder
    from lorakit.store.models import resolve_model as resolve_local

    try:
        return resolve_local(spec)
    except ModelNotFound:
        ref = hub_ref(spec)
        if ref is None:
            raise
    from lorakit.hub.install import default_target

    folder = default_target(ref, "model")
    if not (is_hf_folder(folder) or any(folder.glob("*.gguf"))):
        folder = fetch(ref, "model", quiet)
    return resolve_local(str(folder))  # a GGUF repository is converted once, like a local .gguf


def resolve_lora(name: str, quiet: bool = False) -> Path:
    """``--lora`` NAME -> an adapter folder: a local folder or name, else a hub id fetched once."""
    from lorakit.store.lora_spec import resolve_lora_path

    try:
        return resolve_lora_path(name)
    except AdapterError as error:
        ref = hub_ref(name)
        if ref is None or "is a file" in error.message:
            raise
    from lorakit.hub.install import default_target

    folder = default_target(ref, "adapter")
    if (folder / "adapter_config.json").is_file():
        return folder
    return fetch(ref, "adapter", quiet)


def fetch(ref: RepoRef, kind: str, quiet: bool = False) -> Path:
    """Download ``ref`` through the download store and return its folder (an adapter's own folder)."""
    from lorakit.hub.hub_errors import ErrorContext, scrubbed, transport_errors, translate
    from lorakit.hub.listing import NotInCache
    from lorakit.hub.pipeline import DownloadOptions, download_repo
    from lorakit.hub.settings import hub_runtime, read_settings
    from lorakit.output.console import err_console, warn

    settings = read_settings()
    context = ErrorContext(ref.repo_id, ref.revision, settings.endpoint, bool(settings.token))
    error_type = ModelNotFound if kind == "model" else AdapterError
    console = err_console()
    if not quiet and not settings.offline:
        console.print(f"{ref.display()} is not downloaded yet: fetching it from {settings.endpoint}", markup=False)
    try:
        with hub_runtime(settings):
            result = download_repo(ref, DownloadOptions(expect_kind=kind), settings, console)
    except NotInCache as error:
        raise unavailable(ref, kind, "HF_HUB_OFFLINE=1 forbids fetching it", error_type) from error
    except LorakitError as error:
        raise scrubbed(error, settings.secrets)
    except transport_errors() as error:
        reason = f"the hub at {settings.endpoint} cannot be reached ({type(error).__name__})"
        raise scrubbed(unavailable(ref, kind, reason, error_type), settings.secrets) from error
    except Exception as error:  # library and OS errors become one line, token scrubbed
        raise scrubbed(translate(error, context), settings.secrets) from error
    for message in result.warnings:
        warn(message)
    if not quiet:
        console.print(f"{ref.display()}: {result.status}, commit {result.snapshot.commit[:12]}, in {result.target}", markup=False)
    return result.adapter_dirs[0] if kind == "adapter" and result.adapter_dirs else result.target


def unavailable(ref: RepoRef, kind: str, reason: str, error_type=LorakitError) -> LorakitError:
    """One line: what is missing, why it cannot be fetched now, what is cached instead, what to run."""
    names = cached_alternatives(kind)
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    folder = "models" if kind == "model" else "loras"
    return error_type(
        f"{KIND_WORDS[kind].split()[1]} {ref.display()} is not downloaded and {reason}"
        f" (cached {folder}: {shown or 'none'})",
        f"use one of those, or run `lorakit download {ref.repo_id}{':' + ref.revision if ref.revision_given else ''}` once the hub is reachable",
    )


def cached_alternatives(kind: str) -> list[str]:
    """Names a command accepts right now: folders under models/ (or loras/) and repos in the HF cache."""
    from lorakit.hub.settings import hf_cache_dir

    base = home.models_dir() if kind == "model" else home.loras_dir()
    marker = "config.json" if kind == "model" else "adapter_config.json"
    names: list[str] = []
    try:
        names += sorted(p.name for p in base.iterdir() if (p / marker).is_file())
    except OSError:
        pass
    local = set(names)
    try:
        for storage in sorted(hf_cache_dir().glob("models--*--*")):
            repo_id = storage.name[len("models--"):].replace("--", "/", 1)
            snapshots = [s for s in (storage / "snapshots").glob("*") if (s / marker).exists()]
            if snapshots and home.folder_name_for_repo(repo_id) not in local:
                names.append(repo_id)
    except OSError:
        pass
    return names
