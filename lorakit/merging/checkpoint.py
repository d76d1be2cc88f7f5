"""The base model's tensors as a source: names, dtypes and shapes up front, each tensor read on demand.

Three sources share one small interface (``names``, ``dtype``, ``shape``, ``read``):
safetensors shards (the streaming default), pickle ``.bin`` shards (opt-in, ``weights_only``) and an
in-memory state dict (a dequantized base).
"""

from __future__ import annotations

import json
from pathlib import Path

from lorakit.errors import LorakitError, ModelNotFound
from lorakit.merging.safetensors_io import (
    TensorEntry,
    dtype_name,
    list_entries,
    read_tensor,
)

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"


class TensorSource:
    fresh_reads = False
    """True when ``read`` returns a new buffer each time (so the merge may update it in place)."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def dtype(self, name: str) -> str:
        """The safetensors dtype name (``F32``, ``BF16``, ...)."""
        raise NotImplementedError

    def shape(self, name: str) -> tuple[int, ...]:
        raise NotImplementedError

    def read(self, name: str):
        raise NotImplementedError

    def raw_entry(self, name: str) -> TensorEntry | None:
        """Where the tensor's stored bytes are, when they can be copied or read as they are (else ``None``)."""
        return None

    def largest_file_bytes(self) -> int:
        return 0

    def __contains__(self, name: str) -> bool:
        return name in set(self.names())


class SafetensorsSource(TensorSource):
    fresh_reads = True

    def __init__(self, files: list[Path]):
        self.files = files
        self.entries: dict[str, TensorEntry] = {}
        for file in files:
            for entry in list_entries(file):
                self.entries[entry.name] = entry

    def names(self):
        return list(self.entries)

    def dtype(self, name):
        return self.entries[name].dtype

    def shape(self, name):
        return self.entries[name].shape

    def read(self, name):
        return read_tensor(self.entries[name])

    def raw_entry(self, name):
        return self.entries[name]

    def largest_file_bytes(self):
        return max(file.stat().st_size for file in self.files)

    def __contains__(self, name):
        return name in self.entries


class MemorySource(TensorSource):
    def __init__(self, tensors: dict, largest_file_bytes: int = 0):
        self.tensors = tensors
        self._largest = largest_file_bytes

    def names(self):
        return list(self.tensors)

    def dtype(self, name):
        return dtype_name(self.tensors[name].dtype)

    def shape(self, name):
        return tuple(self.tensors[name].shape)

    def read(self, name):
        return self.tensors[name]

    def largest_file_bytes(self):
        return self._largest

    def __contains__(self, name):
        return name in self.tensors


class PickleSource(MemorySource):
    """``pytorch_model*.bin`` loaded with ``weights_only=True`` and ``mmap=True`` (never arbitrary code)."""

    def __init__(self, files: list[Path]):
        from lorakit.store.pickles import load_pickle

        tensors = {}
        for file in files:
            tensors.update(load_pickle(file, f"model {file.parent.name}", mmap=True))
        super().__init__(tensors, max(file.stat().st_size for file in files))


def _indexed_files(folder: Path, index_name: str) -> list[Path]:
    index_path = folder / index_name
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as error:
        raise ModelNotFound(f"{index_path} is not a valid shard index: {error}", "download or save the model again") from error
    files = []
    for name in dict.fromkeys(weight_map.values()):
        path = folder / name
        if not path.is_file():
            raise ModelNotFound(f"shard {name} listed in {index_name} is missing from {folder}", "the model download is incomplete")
        files.append(path)
    return files


def safetensors_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """``{tensor name: shape}`` from the safetensors headers of a model folder (no data read); ``None``
    when the folder has no safetensors weights or they cannot be read (the merge reports that later)."""
    folder = Path(folder)
    try:
        if (folder / SAFE_INDEX).is_file():
            source = SafetensorsSource(_indexed_files(folder, SAFE_INDEX))
        elif (folder / SAFE_SINGLE).is_file():
            source = SafetensorsSource([folder / SAFE_SINGLE])
        else:
            return None
    except (LorakitError, OSError, ValueError):
        return None
    return {name: entry.shape for name, entry in source.entries.items()}


def open_checkpoint(folder: Path, allow_pickle: bool = False) -> TensorSource:
    folder = Path(folder)
    if (folder / SAFE_INDEX).is_file():
        return SafetensorsSource(_indexed_files(folder, SAFE_INDEX))
    if (folder / SAFE_SINGLE).is_file():
        return SafetensorsSource([folder / SAFE_SINGLE])
    pickles = [folder / PICKLE_INDEX, folder / PICKLE_SINGLE]
    if any(path.is_file() for path in pickles):
        if not allow_pickle:
            raise ModelNotFound(
                f"'{folder}' has only pickle weights (pytorch_model.bin), which can run code when loaded",
                "convert it to safetensors, or pass --allow-pickle to read it with torch.load(weights_only=True)",
            )
        files = _indexed_files(folder, PICKLE_INDEX) if pickles[0].is_file() else [pickles[1]]
        return PickleSource(files)
    raise ModelNotFound(f"'{folder}' has no model weights (model.safetensors or a shard index)", "pass a complete Hugging Face model folder")
