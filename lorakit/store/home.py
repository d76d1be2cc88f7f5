"""Where lorakit keeps models, LoRAs and logs: ``LORAKIT_HOME`` (default ``~/.lorakit``).

The layout follows text-generation-webui so its users find their way: ``models/<org>_<name>`` and
``loras/<org>_<name>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from lorakit.errors import LorakitError


def home() -> Path:
    """The home folder (it need not exist yet: it is created on first write); a file there is refused."""
    configured = os.environ.get("LORAKIT_HOME")
    path = Path(configured).expanduser() if configured else Path.home() / ".lorakit"
    _refuse_file(path, "LORAKIT_HOME" if configured else "the lorakit home", "point LORAKIT_HOME at a folder (it is created when needed)")
    return path


def _refuse_file(path: Path, what: str, hint: str) -> None:
    # Every command reads the home first, so this is the one place a misplaced file is named.
    blocker = next((part for part in (path, *path.parents) if part.exists() and not part.is_dir()), None)
    if blocker is not None:
        detail = "is a file" if blocker == path else f"is inside {blocker}, which is a file"
        raise LorakitError(f"{what} '{path}' {detail}, not a folder", hint)


def _sub(name: str) -> Path:
    path = home() / name
    _refuse_file(path, f"{name}/ of the lorakit home", f"move that file away: lorakit keeps its {name} in that folder")
    return path


def models_dir() -> Path:
    return _sub("models")


def loras_dir() -> Path:
    return _sub("loras")


def cache_dir() -> Path:
    return _sub("cache")


def folder_name_for_repo(repo_id: str) -> str:
    """``tloen/alpaca-lora-7b`` -> ``tloen_alpaca-lora-7b`` (the webui's naming)."""
    return repo_id.strip("/").replace("/", "_")
