"""Where lorakit keeps models, LoRAs and logs: ``LORAKIT_HOME`` (default ``~/.lorakit``).

The layout follows text-generation-webui so its users find their way: ``models/<org>_<name>`` and
``loras/<org>_<name>``.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    configured = os.environ.get("LORAKIT_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".lorakit"


def models_dir() -> Path:
    return home() / "models"


def loras_dir() -> Path:
    return home() / "loras"


def cache_dir() -> Path:
    return home() / "cache"


def folder_name_for_repo(repo_id: str) -> str:
    """``tloen/alpaca-lora-7b`` -> ``tloen_alpaca-lora-7b`` (the webui's naming)."""
    return repo_id.strip("/").replace("/", "_")
