"""``--lora NAME[:WEIGHT]``: parse the option and find the adapter folder it names."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import AdapterError, UsageError
from lorakit.store import home

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class LoraSpec:
    text: str
    name: str
    weight: float = 1.0


def parse_lora(text: str) -> LoraSpec:
    """Split ``NAME[:WEIGHT]``; a name may itself contain ':' (the weight is the last part).

    A hub id may carry a revision: ``ORG/NAME:REVISION`` and ``ORG/NAME:REVISION:WEIGHT``.
    """
    text = text.strip()
    if not text:
        raise UsageError("--lora needs a name or folder")
    head, sep, tail = text.rpartition(":")
    if sep and _WEIGHT.match(tail):
        if not head:
            raise UsageError(f"--lora '{text}' has a weight but no name")
        return LoraSpec(text, head, parse_weight(tail, f"--lora '{text}'"))
    if sep and REPO_ID.match(head) and tail and not _WEIGHT.match(tail):
        return LoraSpec(text, text, 1.0)  # a hub id with its revision: ORG/NAME:REVISION
    if sep and tail and not Path(text).exists() and "/" not in tail and "\\" not in tail:
        raise UsageError(f"--lora '{text}': '{tail}' is not a number", "write NAME or NAME:WEIGHT, e.g. mylora:0.5")
    return LoraSpec(text, text, 1.0)


def parse_weight(text, where: str) -> float:
    """A LoRA weight: any finite number (``1e999`` parses to inf and is refused like ``inf``)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: '{text}' is not a number", "write NAME or NAME:WEIGHT, e.g. mylora:0.5") from None
    if not math.isfinite(value):
        raise UsageError(f"{where}: the weight '{text}' is not a finite number", "use a weight such as 0.5, 1 or 2")
    return value


def parse_loras(texts) -> list[LoraSpec]:
    return [parse_lora(text) for text in texts or ()]


def refuse_repeats(named, where: str = "--lora") -> None:
    """One rule for every command: the same adapter folder named twice is refused, not attached twice.

    ``named``: ``(name as typed, without its weight; resolved folder)`` pairs. Two different folders that share a
    name are fine (the second is shown as ``NAME-2``); one folder twice is almost always a typo, and
    if meant, it is one LoRA at the summed weight.
    """
    seen: set[str] = set()
    for name, path in named:
        key = str(Path(path).resolve())
        if key in seen:
            raise UsageError(f"{where} names the LoRA '{name}' twice", f"give it once with the weight you want, e.g. {name}:2")
        seen.add(key)


def resolve_lora_path(name: str) -> Path:
    """A folder path as given, else a folder under ``$LORAKIT_HOME/loras``."""
    candidates = [Path(name).expanduser(), home.loras_dir() / name, home.loras_dir() / home.folder_name_for_repo(name)]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
        if candidate.is_file():
            raise AdapterError(f"LoRA '{name}' is a file, not an adapter folder", "pass the folder that holds adapter_config.json")
    raise AdapterError(
        f"LoRA '{name}' not found (looked for the folder '{candidates[0]}' and under {home.loras_dir()})",
        f"pass an adapter folder, or fetch it with `lorakit download {name}`" if REPO_ID.match(name) else "pass an adapter folder",
    )


def display_name(spec: LoraSpec, path: Path) -> str:
    """A short unique-ish label: the folder name."""
    return path.resolve().name or spec.name
