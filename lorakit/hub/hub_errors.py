"""Library errors -> one actionable line; every line leaves here with the token scrubbed out."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_HF_TOKEN_SHAPE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
_URL_USERINFO = re.compile(r"(?i)(https?://)[^/@\s]+@")
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def scrub(text: str, secrets=()) -> str:
    """Remove every known token, anything that looks like one, and credentials inside URLs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _HF_TOKEN_SHAPE.sub("hf_***", text)
    return _URL_USERINFO.sub(r"\1***@", text)


def scrubbed(error: LorakitError, secrets=()) -> LorakitError:
    error.message = scrub(error.message, secrets)
    error.hint = scrub(error.hint, secrets) if error.hint else error.hint
    error.args = (error.message,)
    return error


@dataclass(frozen=True)
class ErrorContext:
    repo_id: str
    revision: str
    endpoint: str
    has_token: bool
    filename: str | None = None


def transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level failures of whichever HTTP library this huggingface_hub uses (httpx2 in 2.x).

    Timeouts and cut transfers among them are transient; a DNS failure or a refused connection is not
    (``is_unreachable``), and is reported at once.
    """
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def is_unreachable(error: BaseException) -> bool:
    """A DNS failure or a refused connection: retrying in a second will not change it."""
    for module in ("httpx2", "httpx"):
        try:
            connect_error = getattr(__import__(module), "ConnectError")
        except (ImportError, AttributeError):
            continue
        if isinstance(error, connect_error):
            return True
    return isinstance(error, (ConnectionRefusedError, ConnectionResetError)) or "Name or service not known" in str(error)


def retry_after(error: BaseException) -> float | None:
    """Seconds a 429 (or 503) answer asked us to wait, from its ``Retry-After`` header (delay-seconds form)."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        value = next((headers[key] for key in headers if key.lower() == "retry-after"), None)
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def status_code(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def is_transient(error: BaseException) -> bool:
    """Worth another try: network hiccups, timeouts, truncated bodies, 5xx and rate limits."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return False
    if isinstance(error, HfHubHTTPError):
        return status_code(error) in TRANSIENT_STATUS
    if is_unreachable(error):
        return False
    if isinstance(error, transport_errors()):
        return True
    # huggingface_hub raises a plain OSError when fewer bytes arrived than announced.
    return isinstance(error, OSError) and "Consistency check failed" in str(error)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def translate(error: BaseException, ctx: ErrorContext) -> LorakitError:
    """The one line a user needs for a failure while talking to the hub or writing files."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # Renamed over huggingface_hub versions (0.x: EntryNotFoundError for both).
    RemoteEntryNotFoundError = getattr(hf_errors, "RemoteEntryNotFoundError", hf_errors.EntryNotFoundError)
    LocalEntryNotFoundError = getattr(hf_errors, "LocalEntryNotFoundError", FileNotFoundError)

    page = f"{ctx.endpoint}/{ctx.repo_id}"
    token_hint = "pass --token or set HF_TOKEN (a token with read access)"
    if isinstance(error, LorakitError):
        return error
    if isinstance(error, GatedRepoError):
        if ctx.has_token:
            return LorakitError(f"{ctx.repo_id} is gated and your token has not been granted access", f"request access on {page}, then run the command again")
        return LorakitError(f"{ctx.repo_id} is gated: it needs a token from an account that accepted its conditions", f"request access on {page} and {token_hint}")
    if isinstance(error, RevisionNotFoundError):
        return LorakitError(f"revision '{ctx.revision}' not found in {ctx.repo_id}", f"check the branch, tag or commit on {page}/tree/main")
    if isinstance(error, RemoteEntryNotFoundError):
        return LorakitError(f"file '{ctx.filename or '?'}' is not in {ctx.repo_id} at revision {ctx.revision}", "the repository changed while downloading; run the command again")
    if isinstance(error, RepositoryNotFoundError):
        if ctx.has_token:
            return LorakitError(f"repository {ctx.repo_id} not found at {ctx.endpoint}, or your token cannot read it", "check the name and the token's permissions")
        return LorakitError(f"repository {ctx.repo_id} not found at {ctx.endpoint} (or it is private)", f"check the name; for a private repository {token_hint}")
    if isinstance(error, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return LorakitError(f"{ctx.repo_id} is not fully in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading", "unset HF_HUB_OFFLINE to download it")
    if isinstance(error, HfHubHTTPError):
        code = status_code(error)
        if code in (401, 403):
            return LorakitError(f"the hub refused access to {ctx.repo_id} (HTTP {code})", token_hint if not ctx.has_token else "check the token's permissions")
        if code in TRANSIENT_STATUS:
            return LorakitError(f"the hub at {ctx.endpoint} keeps failing (HTTP {code}) for {ctx.filename or ctx.repo_id}", "try again later; finished files are kept in the cache")
        return LorakitError(f"the hub at {ctx.endpoint} answered HTTP {code} for {ctx.filename or ctx.repo_id}: {_short(error)}")
    if isinstance(error, transport_errors()):
        return LorakitError(
            f"cannot reach {ctx.endpoint} ({type(error).__name__}: {_short(error)})",
            "check the network or HF_ENDPOINT, then run the command again (finished files are kept); HF_HUB_OFFLINE=1 uses only the cache",
        )
    if isinstance(error, OSError):
        return disk_error(error)
    return LorakitError(f"{type(error).__name__}: {_short(error)} (set LORAKIT_DEBUG=1 for the traceback)")


def disk_error(error: OSError, path: Path | None = None) -> LorakitError:
    where = path or getattr(error, "filename", None) or ""
    if error.errno == errno.ENOSPC:
        return LorakitError(f"no space left on the device holding {where}".rstrip(), "free some space, or choose another --output (or HF_HUB_CACHE)")
    if isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return LorakitError(f"cannot write to {where}: permission denied", "choose a folder you can write to (--output for the files, HF_HUB_CACHE for the cache)")
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        return LorakitError(f"cannot create a folder at {where}: a file is in the way", "choose another --output")
    if "Consistency check failed" in str(error):
        return LorakitError(f"the transfer stayed incomplete after several tries ({_short(error)})", "run the command again; finished files are kept")
    return LorakitError(f"{type(error).__name__}: {_short(error)}")
