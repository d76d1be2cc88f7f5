"""Convert a GGUF file once into a normal Hugging Face folder and reuse it afterwards.

transformers can load a GGUF (``gguf_file=``) but refuses to save or train that object, because it
marks it as quantized. Clearing the quantizer state before saving gives an ordinary folder whose
logits are identical and which reloads in well under a second.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from lorakit.errors import ModelNotFound
from lorakit.output.console import info
from lorakit.store import home
from lorakit.store.atomic import atomic_folder, file_lock, removed_on_failure

SOURCE_FILE = "lorakit_source.json"


def _fingerprint(gguf: Path) -> dict:
    stat = gguf.stat()
    return {"gguf": str(gguf.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def folder_for(gguf: Path) -> Path:
    digest = hashlib.sha256(str(gguf.resolve()).encode()).hexdigest()[:8]
    return home.models_dir() / f"{gguf.stem}-{digest}"


def _is_current(folder: Path, fingerprint: dict) -> bool:
    marker = folder / SOURCE_FILE
    if not (folder / "config.json").is_file() or not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except ValueError:
        return False
    return recorded.get("size") == fingerprint["size"] and recorded.get("mtime") == fingerprint["mtime"]


def converted_folder(gguf: Path, target: Path) -> Path:
    gguf = Path(gguf)
    fingerprint = _fingerprint(gguf)
    if _is_current(target, fingerprint):
        return target
    check_magic(gguf)
    with removed_on_failure(target), file_lock(target.with_name(f".{target.name}.lock")):
        if _is_current(target, fingerprint):  # another process finished it while we waited
            return target
        info(f"Converting {gguf.name} into a Hugging Face folder at {target} (once; about 15-30 s)...")
        started = time.perf_counter()
        with atomic_folder(target, replace=True) as tmp:
            convert(gguf, tmp)
            (tmp / SOURCE_FILE).write_text(json.dumps(fingerprint, indent=2) + "\n")
        info(f"Converted in {time.perf_counter() - started:.1f} s.")
    return target


def check_magic(gguf: Path) -> None:
    """A file that is not a GGUF at all is named in one line, before the conversion starts."""
    try:
        with open(gguf, "rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise ModelNotFound(f"cannot read the GGUF file {gguf}: {error.strerror or error}") from None
    if magic != b"GGUF":
        raise ModelNotFound(f"'{gguf}' is not a GGUF file (it does not start with the GGUF magic bytes)", "pass a complete .gguf file or a model folder")


def convert(gguf: Path, output: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as error:
        text = " ".join(str(error).split())[:200] or type(error).__name__
        raise ModelNotFound(f"cannot convert the GGUF file {gguf.name}: {text}", "is the `gguf` package installed and the file complete?") from error
    # The GGUF path marks the model as quantized, which blocks save_pretrained and training.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(output)
