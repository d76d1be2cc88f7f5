"""Read and write safetensors one tensor at a time, without mmap and without building whole files in memory.

``safetensors.torch.save_file`` serialises a whole state dict at once and ``safe_open`` maps the file,
so every page it touches counts as resident memory. The merge needs neither: the header says where
each tensor lives, so a tensor is read with one ``readinto`` (into a buffer the caller may reuse) and
written with one ``write``. A tensor the merge leaves as it is never enters this process at all:
:meth:`StreamingWriter.copy_raw` copies its bytes file to file in the kernel (``copy_file_range``),
so its dtype and every bit stay as they were.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.store.safetensors_header import read_header

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
    header = read_header(path)  # validates the file first (a short or truncated file is named)
    base = _data_start(path)
    entries = [
        TensorEntry(name, path, info["dtype"], tuple(info["shape"]), base + info["data_offsets"][0], base + info["data_offsets"][1])
        for name, info in header.items()
    ]
    return sorted(entries, key=lambda entry: entry.start)


def check_entry(entry: TensorEntry) -> None:
    """Refuse a header whose byte range does not match its dtype and shape (a corrupt file)."""
    if entry.dtype not in DTYPES:
        raise LorakitError(f"unsupported safetensors dtype {entry.dtype} ('{entry.name}' in {entry.file})")
    if entry.end - entry.start != nbytes(entry.dtype, entry.shape):
        raise LorakitError(
            f"{entry.file} is corrupt: '{entry.name}' has {entry.end - entry.start} bytes for {entry.dtype} {list(entry.shape)}",
            "download or save the model again",
        )


def read_tensor(entry: TensorEntry, into=None):
    """Read one tensor into a CPU tensor with plain file reads.

    ``into``: a uint8 tensor of at least the tensor's size to read into (a buffer reused from tensor
    to tensor, so no fresh memory is touched per tensor); the result is then a view of it.
    """
    import torch

    check_entry(entry)
    size = entry.end - entry.start
    buffer = torch.empty(size, dtype=torch.uint8) if into is None else into[:size]
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


def _write_all(fd: int, data: memoryview) -> None:
    done, size = 0, len(data)
    while done < size:
        done += os.write(fd, data[done:])


def _copy_range(source_fd: int, target_fd: int, offset: int, size: int) -> None:
    """``size`` bytes of ``source_fd`` from ``offset`` to ``target_fd``'s current position, kernel-side when possible."""
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < size:
                got = os.copy_file_range(source_fd, target_fd, size - done, offset + done)
                if not got:
                    break
                done += got
        except OSError:  # another filesystem, an old kernel, a sandbox: plain reads and writes below
            pass
    while done < size:
        chunk = os.pread(source_fd, min(size - done, 16 << 20), offset + done)
        if not chunk:
            raise LorakitError("the input file ended early while copying a tensor", "the file is truncated; download or save it again")
        _write_all(target_fd, memoryview(chunk))
        done += len(chunk)


class StreamingWriter:
    """Write one safetensors file whose header is known in advance; tensors arrive one by one, in order.

    The file has exactly the layout ``safetensors`` writes: an 8-byte header length, the JSON header
    padded with spaces to 8 bytes, then every tensor's bytes back to back in header order.
    """

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
        self._handle = self.path.open("wb", buffering=0)  # large writes: no Python-side buffer to copy through
        _write_all(self._handle.fileno(), memoryview(struct.pack("<Q", len(raw)) + raw))
        self._next = 0

    def _expect(self, name: str, shape, dtype: str) -> None:
        if self._next >= len(self.layout):
            raise LorakitError(f"internal error: writing {name} after the last planned tensor of {self.path.name}")
        expected_name, expected_dtype, expected_shape = self.layout[self._next]
        if name != expected_name or tuple(shape) != tuple(expected_shape) or dtype != expected_dtype:
            raise LorakitError(f"internal error: writing {name} {tuple(shape)} {dtype} where {expected_name} {tuple(expected_shape)} {expected_dtype} was planned")

    def write(self, name: str, tensor) -> None:
        self._expect(name, tensor.shape, dtype_name(tensor.dtype))
        _write_all(self._handle.fileno(), tensor_bytes(tensor.cpu()))
        self._next += 1

    def copy_raw(self, name: str, entry: TensorEntry) -> None:
        """Write tensor ``name`` as the unchanged bytes of ``entry`` (same dtype and shape), never decoded."""
        check_entry(entry)
        self._expect(name, entry.shape, entry.dtype)
        with entry.file.open("rb", buffering=0) as source:
            _copy_range(source.fileno(), self._handle.fileno(), entry.start, entry.end - entry.start)
        self._next += 1

    def abort(self) -> None:
        """Close the file after a failure (the caller's temporary folder is removed with it)."""
        self._handle.close()

    def close(self) -> None:
        if self._next != len(self.layout):
            self._handle.close()
            raise LorakitError(f"internal error: {self.path.name} got {self._next} of {len(self.layout)} tensors")
        self._handle.close()
