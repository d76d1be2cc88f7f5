"""Read a safetensors header (names, dtypes, shapes) without torch and without reading the data."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from lorakit.errors import AdapterError

_MAX_HEADER = 100 * 1024 * 1024


def read_header(path: Path) -> dict[str, dict]:
    """Return ``{tensor_name: {"dtype": str, "shape": [...], "data_offsets": [a, b]}}``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                raise AdapterError(f"{path} is not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", raw)
            if length > _MAX_HEADER or length > path.stat().st_size:
                raise AdapterError(f"{path} is not a valid safetensors file (bad header length)")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise AdapterError(f"cannot read the safetensors header of {path}: {error}") from error
    header.pop("__metadata__", None)
    data_size = path.stat().st_size - 8 - length
    for name, info in header.items():
        start, end = info.get("data_offsets", (0, 0))
        if end > data_size:
            raise AdapterError(f"{path} is truncated: tensor '{name}' runs past the end of the file", "download or save it again")
    return header
