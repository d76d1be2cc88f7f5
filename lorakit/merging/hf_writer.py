"""Write merged weights as Hugging Face safetensors shards plus ``model.safetensors.index.json``.

The shard layout is planned from shapes alone, so each shard's header is written first and every
tensor is merged, cast and written as soon as it is read.
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
from lorakit.merging.safetensors_io import StreamingWriter, nbytes, torch_dtype

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


def write_hf_weights(
    plan: MergePlan, source: TensorSource, folder: Path, max_shard_bytes: int, device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> WriteReport:
    shards = plan_shards(plan.tensors, max_shard_bytes)
    names = shard_names(len(shards))
    weight_map: dict[str, str] = {}
    for file_name, shard in zip(names, shards):
        writer = StreamingWriter(folder / file_name, [(t.name, t.dtype, t.shape) for t in shard])
        try:
            for tensor in shard:
                base = source.read(tensor.source)
                if tensor.updates:
                    merged = merge_tensor(tensor, base, device, owned=source.fresh_reads)
                    out = merged.to(dtype=torch_dtype(tensor.dtype)).cpu()
                    del merged
                else:
                    out = base.to(dtype=torch_dtype(tensor.dtype))
                writer.write(tensor.name, out)
                weight_map[tensor.name] = file_name
                del base, out
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
