"""Endpoint, offline mode, cache folder and token, read from the environment when the command runs.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache paths once, when it is first
imported (``huggingface_hub.constants``). A process that imported it earlier (a test session, a plugin,
transformers) would otherwise keep stale values, so lorakit resolves them here at call time, passes
``endpoint`` / ``cache_dir`` / ``token`` explicitly to every call, and sets the one switch that cannot be
passed (offline mode, checked by the library's HTTP hook) only for the duration of the command.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "ON", "YES", "TRUE"}


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in _TRUE


def hf_cache_dir() -> Path:
    """The standard Hugging Face hub cache, by the same rules as huggingface_hub."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.path.expandvars(os.environ[variable])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.path.expandvars(xdg)).expanduser() / "huggingface" / "hub"


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    offline: bool
    cache_dir: Path
    token: str | None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:  # never show the token, even in a debugger or a traceback
        return f"HubSettings(endpoint={self.endpoint!r}, offline={self.offline}, cache_dir={str(self.cache_dir)!r})"

    @property
    def token_arg(self) -> str | bool:
        """What to pass as ``token=``: the token, or False so the library looks for none on its own."""
        return self.token or False


def read_settings(token_flag: str | None = None) -> HubSettings:
    offline = _is_true(os.environ.get("HF_HUB_OFFLINE")) or _is_true(os.environ.get("TRANSFORMERS_OFFLINE"))
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")
    token = (token_flag or "").strip() or None
    if token is None and not offline:
        from huggingface_hub import get_token

        token = get_token()  # HF_TOKEN, then the login stored by `hf auth login`
    secrets = {value for value in (token, token_flag, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")) if value and value.strip()}
    return HubSettings(endpoint, offline, hf_cache_dir(), token, tuple(sorted({s.strip() for s in secrets}, key=len, reverse=True)))


@contextlib.contextmanager
def hub_runtime(settings: HubSettings) -> Iterator[None]:
    """Apply the call-time offline switch and quiet the library's own logging (lorakit reports progress)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import logging as hf_logging

    previous_offline = constants.HF_HUB_OFFLINE
    hf_logger = hf_logging.get_logger()
    previous_level = hf_logger.level
    constants.HF_HUB_OFFLINE = settings.offline
    hf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous_offline
        hf_logger.setLevel(previous_level)
