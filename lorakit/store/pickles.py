"""The one way lorakit reads a pickle weight file: ``torch.load(weights_only=True)``, refusals in one line.

A pickle that holds more than plain tensors (classes, functions: what can run code when loaded) is
refused. torch's own message is ~900 characters and ends by suggesting ``weights_only=False``, which
would run that code: it is never shown, and lorakit never offers that way round.
"""

from __future__ import annotations

import re
from pathlib import Path

from lorakit.errors import LorakitError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|global `?([\w.]+)`?|(?:Unsupported|unsupported) (?:operand|class)[^\w]*([\w.]+)")


class PickleRefused(LorakitError):
    """A pickle file held something other than plain tensors."""


def _what_it_holds(error: BaseException) -> str:
    match = _GLOBAL.search(str(error))
    name = next((group for group in match.groups() if group), "") if match else ""
    return f" (it references {name})" if name else ""


def load_pickle(path: Path, what: str, **kwargs):
    """``torch.load(path, weights_only=True)`` on the CPU; anything refused or unreadable is one line."""
    import pickle

    import torch

    kwargs.setdefault("map_location", "cpu")
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except Exception as error:  # noqa: BLE001 - every failure becomes one line, torch's advice never shown
        if isinstance(error, pickle.UnpicklingError) or "weights_only" in str(error):
            raise PickleRefused(
                f"{what}: {Path(path).name} holds more than plain tensors{_what_it_holds(error)}, and loading it could run code",
                "lorakit loads only tensors from pickles; convert it to safetensors with the tool that made it",
            ) from None
        if isinstance(error, (MemoryError, PermissionError, FileNotFoundError)):
            raise
        first = " ".join(str(error).split())[:160] or type(error).__name__
        raise PickleRefused(f"{what}: cannot read {Path(path).name} ({first})", "the file is damaged or incomplete; download or save it again") from None
