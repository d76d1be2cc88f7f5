"""Write merged weights as Hugging Face safetensors shards plus ``model.safetensors.index.json``.

The shard layout is planned from shapes alone, so each shard's header is written first and every
tensor is merged, cast and written as soon as it is read. A tensor that no LoRA changes and whose
dtype stays is copied byte for byte from its input shard, in the kernel, without being decoded;
a tensor that changes is read into one buffer reused from tensor to tensor and merged in place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lorakit.errors import UsageError
from lorakit.merging.checkpoint import TensorSource
from lorakit.merging.merge_math import merge_tensor
from lorakit.merging.plan import MergePlan, OutTensor
from lorakit.merging.safetensors_io import (
    StreamingWriter,
    nbytes,
    read_tensor,
    torch_dtype,
)

INDEX_FILE = "model.safetensors.index.json"
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?)?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``5GB`` (10^9), ``500MiB`` (2^20), ``2000000`` (bytes) -> bytes."""
    match = _SIZE.match(str(text))
    if not match or float(match[1]) <= 0:
        raise UsageError(f"--max-shard-size '{text}' is not a size", "write e.g. 5GB, 500MB, 2GiB or a number of bytes")
    return int(float(match[1]) * _UNITS[(match[2] or "").upper()])


def plan_shards(tensors: list[OutTensor], max_bytes: int) -> list[list[OutTensor]]:
    """Greedy in tensor order, like transformers: a tensor larger than the limit gets a shard of its own."""
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for tensor in tensors:
        tensor_size = nbytes(tensor.dtype, tensor.shape)
        if shards[-1] and size + tensor_size > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor_size
    return shards


def shard_names(count: int) -> list[str]:
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{index:05d}-of-{count:05d}.safetensors" for index in range(1, count + 1)]


@dataclass
class WriteReport:
    files: list[str]
    total_bytes: int
    tensors: int
    updated: int


class _Scratch:
    """One uint8 buffer, grown to the largest tensor read so far and reused for every read."""

    def __init__(self):
        self.buffer = None

    def get(self, size: int):
        import torch

        if self.buffer is None or self.buffer.numel() < size:
            self.buffer = None  # free the old one before allocating the larger one
            self.buffer = torch.empty(size, dtype=torch.uint8)
        return self.buffer


def write_hf_weights(
    plan: MergePlan, source: TensorSource, folder: Path, max_shard_bytes: int, device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> WriteReport:
    shards = plan_shards(plan.tensors, max_shard_bytes)
    names = shard_names(len(shards))
    weight_map: dict[str, str] = {}
    scratch = _Scratch()
    for file_name, shard in zip(names, shards):
        writer = StreamingWriter(folder / file_name, [(t.name, t.dtype, t.shape) for t in shard])
        try:
            for tensor in shard:
                _write_one(writer, tensor, source, device, scratch)
                weight_map[tensor.name] = file_name
        except BaseException:
            writer.abort()
            raise
        writer.close()
        if progress:
            progress(f"wrote {file_name} ({len(shard)} tensors)")
    total = plan.total_bytes()
    if len(names) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return WriteReport(names, total, len(plan.tensors), len(plan.updated()))


def _write_one(writer: StreamingWriter, tensor: OutTensor, source: TensorSource, device: str, scratch: _Scratch) -> None:
    entry = source.raw_entry(tensor.source)
    if entry is not None and not tensor.updates and entry.dtype == tensor.dtype:
        writer.copy_raw(tensor.name, entry)  # unchanged: the stored bytes, never decoded
        return
    if entry is not None:
        base, owned = read_tensor(entry, into=scratch.get(entry.end - entry.start)), True
    else:
        base, owned = source.read(tensor.source), source.fresh_reads
    if tensor.updates:
        merged = merge_tensor(tensor, base, device, owned=owned)  # in place in the buffer when it is fp32 on the CPU
        out = merged.to(dtype=torch_dtype(tensor.dtype)).cpu()
        del merged
    else:
        out = base.to(dtype=torch_dtype(tensor.dtype))
    writer.write(tensor.name, out)
