"""What ``lorakit serve`` hands a serving engine, and how engines are registered.

An engine is anything with a ``name``, a one-line ``summary`` and ``run(request) -> int`` that
serves until it is told to stop (SIGTERM or Ctrl-C) and returns the process exit code. lorakit's
own engine and plugin engines (``register_serve_engines``) get the same :class:`ServeRequest`, so
``lorakit serve --engine NAME`` means the same adapters and names whichever engine serves them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ENGINE = "lorakit"


@dataclass(frozen=True)
class ServeRequest:
    """Everything the user asked of ``lorakit serve``, resolved but not loaded.

    ``loras`` holds the preloaded adapters as ``(name, folder, default weight)``; ``loras_dir`` is
    the folder whose adapters are servable by name (``$LORAKIT_HOME/loras``). ``load_options`` is a
    :class:`lorakit.api.LoadOptions`. ``api_key`` is ``None`` when no key is required; an engine
    must never print it.
    """

    model_path: Path
    model_id: str
    loras: tuple[tuple[str, Path, float], ...] = ()
    loras_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 8
    max_queue: int = 64
    max_loaded_loras: int = 8
    max_tokens_limit: int = 4096
    load_options: Any = None
    loader_name: str | None = None
    allow_insecure: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServeEngine:
    """A registered serving engine: ``run(request)`` blocks while serving, returns the exit code."""

    name: str
    summary: str
    run: Callable[[ServeRequest], int]
