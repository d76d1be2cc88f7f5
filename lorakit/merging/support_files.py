"""Copy what a merged model folder needs besides weights: config, generation config, tokenizer, template.

Every top-level file of the base folder is copied except weights, shard indexes and lorakit's own
markers; ``config.json`` is rewritten when the merge changes the dtype, unties embeddings or drops a
quantization config.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx", ".index.json")
# lorakit's own records describe the folder they are in, never a merged copy of it.
LORAKIT_MARKERS = ("lorakit_source.json", "lorakit_merge.json", "lorakit_download.json", "lorakit_convert.json")
TORCH_DTYPE_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def support_files(base: Path) -> list[Path]:
    return sorted(
        path for path in Path(base).iterdir()
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(WEIGHT_SUFFIXES) and path.name not in LORAKIT_MARKERS
    )


def copy_support_files(base: Path, out: Path) -> list[str]:
    copied = []
    for path in support_files(base):
        # Content only: a downloaded base links into the HF cache, whose files are read-only.
        shutil.copyfile(path, Path(out) / path.name)
        copied.append(path.name)
    return copied


def rewrite_config(out: Path, dtype: str | None = None, untied: bool = False, dequantized: bool = False) -> dict:
    """Adjust the copied ``config.json`` in place; returns the new config."""
    path = Path(out) / "config.json"
    config = json.loads(path.read_text())
    sections = [config] + [config[key] for key in ("text_config",) if isinstance(config.get(key), dict)]
    if dtype:
        name = TORCH_DTYPE_NAMES.get(dtype, dtype)
        config["dtype"] = name
        if "torch_dtype" in config:
            config["torch_dtype"] = name
    if untied:
        for section in sections:
            section["tie_word_embeddings"] = False
    if dequantized:
        for section in sections:
            section.pop("quantization_config", None)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config
