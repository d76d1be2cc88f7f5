"""Legacy adapters (2023 PEFT, e.g. ``tloen/alpaca-lora-7b``) -> safetensors and a clean config.

Those adapters ship ``adapter_model.bin`` (a pickle) and config keys that PEFT dropped long ago
(``enable_lora``, ``merge_weights``...), which makes PEFT warn "Unexpected keyword arguments ...
upgrade the PEFT version" and sends the adapter down the slow pickle path. ``convert_adapter`` reads
the pickle with ``torch.load(weights_only=True)`` (only with ``allow_pickle``), renames tensors to
PEFT's saved form, writes ``adapter_model.safetensors``, maps or drops the old keys, names a base
repository that still exists, and records what it did (with the source file's sha256) in
``lorakit_convert.json``. Files are written under a temporary name and renamed: an adapter folder
that links into the HF cache keeps the cache's copies untouched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import AdapterError
from lorakit.store.adapters import CONFIG_FILE, PICKLE_FILE, SAFETENSORS_FILE, read_adapter_config
from lorakit.store.atomic import atomic_file, atomic_write_text
from lorakit.store.file_hash import file_sha256

CONVERT_RECORD = "lorakit_convert.json"
# Keys of 2023 PEFT configs that current PEFT does not know: what became of each.
LEGACY_KEYS = {
    "enable_lora": "fused-QKV switch of PEFT's old MergedLinear (GPT-2 style); unused for separate q/k/v projections",
    "merge_weights": "merge-on-eval switch of the first PEFT releases; merging is a separate step now (lorakit merge)",
}
# Base repositories that were removed from the hub, and the copies people use instead.
MOVED_BASES = {
    "decapoda-research/llama-7b-hf": "huggyllama/llama-7b",
    "decapoda-research/llama-13b-hf": "huggyllama/llama-13b",
    "decapoda-research/llama-30b-hf": "huggyllama/llama-30b",
    "decapoda-research/llama-65b-hf": "huggyllama/llama-65b",
}
_ADAPTER_NAME = re.compile(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)\.default(?=\.|$)")


def live_base(name: str) -> str:
    """The base repository to name in commands: a moved one replaced by where it lives now."""
    return MOVED_BASES.get(name.strip("/"), name)


def legacy_keys(config: dict) -> list[str]:
    """The config keys current PEFT would warn about (known 2023 ones and any other unknown key)."""
    known = _lora_config_fields()
    return sorted(key for key in config if key in LEGACY_KEYS or (known and key not in known))


def _lora_config_fields() -> set[str]:
    try:
        import dataclasses

        from peft import LoraConfig

        return {f.name for f in dataclasses.fields(LoraConfig)}
    except Exception:  # noqa: BLE001 - without PEFT only the known legacy keys are named
        return set()


def needs_conversion(folder: Path) -> bool:
    folder = Path(folder)
    if not (folder / SAFETENSORS_FILE).is_file() and (folder / PICKLE_FILE).is_file():
        return True
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(key in config for key in LEGACY_KEYS)


@dataclass
class Conversion:
    folder: Path
    source: str | None  # the pickle converted, if any
    source_sha256: str | None
    tensors: int
    dropped: dict[str, object] = field(default_factory=dict)  # key -> its old value
    renamed: int = 0
    base_before: str | None = None
    base_after: str | None = None
    written: list[str] = field(default_factory=list)


def _clean_config(config: dict) -> tuple[dict, dict]:
    if config.get("enable_lora"):
        raise AdapterError(
            f"the adapter uses PEFT's old fused-QKV layout (enable_lora={config['enable_lora']}), which current PEFT cannot load",
            "convert it with the PEFT version that made it",
        )
    dropped = {key: config[key] for key in legacy_keys(config)}
    clean = {key: value for key, value in config.items() if key not in dropped}
    clean.setdefault("peft_type", "LORA")
    clean.setdefault("task_type", "CAUSAL_LM")
    return clean, dropped


def convert_adapter(folder: Path, allow_pickle: bool = False) -> Conversion:
    """Rewrite ``folder`` in today's format; a folder that needs nothing is left as it is."""
    folder = Path(folder)
    config = read_adapter_config(folder)
    clean, dropped = _clean_config(config)
    result = Conversion(folder, None, None, 0, dropped)
    result.base_before = config.get("base_model_name_or_path")
    if result.base_before and live_base(result.base_before) != result.base_before:
        clean["base_model_name_or_path"] = result.base_after = live_base(result.base_before)

    pickle_path = folder / PICKLE_FILE
    if not (folder / SAFETENSORS_FILE).is_file():
        if not pickle_path.is_file():
            raise AdapterError(f"'{folder}' has no weights ({SAFETENSORS_FILE} or {PICKLE_FILE})")
        if not allow_pickle:
            raise AdapterError(
                f"'{folder}' has only a pickle weight file ({PICKLE_FILE}), which can run code when loaded",
                "pass --allow-pickle to convert it (read with torch.load(weights_only=True), only tensors accepted)",
            )
        from lorakit.store.pickles import load_pickle

        state = load_pickle(pickle_path, f"adapter '{folder.name}'")
        if not isinstance(state, dict) or not state:
            raise AdapterError(f"adapter '{folder.name}': {PICKLE_FILE} holds no tensors (an empty adapter)",
                               "this is the known empty-save bug of 2023 PEFT; get the adapter from another source")
        import torch

        odd = next((name for name, value in state.items() if not isinstance(value, torch.Tensor)), None)
        if odd is not None:
            raise AdapterError(f"adapter '{folder.name}': {PICKLE_FILE} holds '{odd}', which is not a tensor", "this is not a PEFT adapter file")
        tensors = {}
        for name, tensor in state.items():
            new = _ADAPTER_NAME.sub(r".\1", name)
            result.renamed += new != name
            tensors[new] = tensor.detach().contiguous()
        from safetensors.torch import save_file

        with atomic_file(folder / SAFETENSORS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        result.source, result.source_sha256, result.tensors = PICKLE_FILE, file_sha256(pickle_path), len(tensors)
        result.written.append(SAFETENSORS_FILE)
    if clean != config:
        atomic_write_text(folder / CONFIG_FILE, json.dumps(clean, indent=2, sort_keys=True) + "\n")
        result.written.append(CONFIG_FILE)
    if result.written:
        _write_record(folder, result)
    return result


def _write_record(folder: Path, result: Conversion) -> None:
    from datetime import datetime, timezone

    from lorakit import __version__

    record = {
        "tool": f"lorakit {__version__}",
        "converted_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": result.source, "source_sha256": result.source_sha256, "tensors": result.tensors,
        "renamed_tensors": result.renamed, "dropped_keys": result.dropped,
        "base_model_before": result.base_before, "base_model_after": result.base_after,
        "files": [{"path": name, "sha256": file_sha256(folder / name), "size": (folder / name).stat().st_size} for name in result.written],
    }
    atomic_write_text(folder / CONVERT_RECORD, json.dumps(record, indent=2) + "\n")
