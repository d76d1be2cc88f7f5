"""Read and write safetensors one tensor at a time, without mmap and without building whole files in memory.

``safetensors.torch.save_file`` serialises a whole state dict at once and ``safe_open`` maps the file,
so every page it touches counts as resident memory. The merge needs neither: the header says where
each tensor lives, so a tensor is read with one ``readinto`` and written with one ``write``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.safetensors_header import read_header

# safetensors dtype name -> (torch dtype attribute, bytes per element)
DTYPES = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
    "U16": ("uint16", 2), "U32": ("uint32", 4), "U64": ("uint64", 8), "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
_ALIGN = 8


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise LorakitError(f"unsupported safetensors dtype {name}")
    return getattr(torch, DTYPES[name][0])


def dtype_name(dtype) -> str:
    text = str(dtype).removeprefix("torch.")
    for name, (attr, _) in DTYPES.items():
        if attr == text:
            return name
    raise LorakitError(f"cannot store dtype {dtype} in safetensors")


def nbytes(dtype: str, shape) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count * DTYPES[dtype][1]


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: its file, its byte range after the header, dtype and shape."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def _data_start(path: Path) -> int:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
    return 8 + length


def list_entries(path: Path) -> list[TensorEntry]:
    """Entries of one safetensors file in the order of their data."""
    path = Path(path)
    base = _data_start(path)
    header = read_header(path)
    entries = [
        TensorEntry(name, path, info["dtype"], tuple(info["shape"]), base + info["data_offsets"][0], base + info["data_offsets"][1])
        for name, info in header.items()
    ]
    return sorted(entries, key=lambda entry: entry.start)


def read_tensor(entry: TensorEntry):
    """Read one tensor into a fresh CPU tensor with plain file reads."""
    import torch

    size = entry.end - entry.start
    buffer = torch.empty(size, dtype=torch.uint8)
    if size:
        view = memoryview(buffer.numpy())
        with entry.file.open("rb", buffering=0) as handle:
            handle.seek(entry.start)
            done = 0
            while done < size:
                got = handle.readinto(view[done:])
                if not got:
                    raise LorakitError(f"{entry.file} ended early while reading '{entry.name}'", "the file is truncated; download or save it again")
                done += got
    return buffer.view(torch_dtype(entry.dtype)).reshape(entry.shape)


def tensor_bytes(tensor) -> memoryview:
    """The raw little-endian bytes of a CPU tensor, without a copy when it is contiguous."""
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


class StreamingWriter:
    """Write one safetensors file whose header is known in advance; tensors arrive one by one, in order."""

    def __init__(self, path: Path, layout: list[tuple[str, str, tuple[int, ...]]], metadata: dict | None = None):
        self.path = Path(path)
        self.layout = list(layout)
        header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        for name, dtype, shape in self.layout:
            size = nbytes(dtype, shape)
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % _ALIGN)  # safetensors pads the header with spaces
        self._handle = self.path.open("wb")
        self._handle.write(struct.pack("<Q", len(raw)))
        self._handle.write(raw)
        self._next = 0

    def write(self, name: str, tensor) -> None:
        expected_name, dtype, shape = self.layout[self._next]
        if name != expected_name or tuple(tensor.shape) != tuple(shape) or dtype_name(tensor.dtype) != dtype:
            raise LorakitError(f"internal error: writing {name} {tuple(tensor.shape)} where {expected_name} {shape} {dtype} was planned")
        self._handle.write(tensor_bytes(tensor.cpu()))
        self._next += 1

    def abort(self) -> None:
        """Close the file after a failure (the caller's temporary folder is removed with it)."""
        self._handle.close()

    def close(self) -> None:
        if self._next != len(self.layout):
            self._handle.close()
            raise LorakitError(f"internal error: {self.path.name} got {self._next} of {len(self.layout)} tensors")
        self._handle.flush()
        self._handle.close()
