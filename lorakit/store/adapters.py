"""Read a PEFT adapter folder without loading its weights: config, weight file, tensor shapes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import AdapterError
from lorakit.store.adapter_checks import check_ranks
from lorakit.store.safetensors_header import read_header

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
BASE_SIGNATURE_FILE = "lorakit_base.json"
PROMPT_FORMAT_FILE = "prompt_format.json"
SIGNATURE_KEYS = ("model_type", "architectures", "hidden_size", "intermediate_size", "vocab_size", "num_hidden_layers")

_PREFIX = "base_model.model."
_SAVED_BASE = re.compile(r"\.base_layer(?=\.)")
_PART = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(\.[^.]+)?(\.weight)?$")


@dataclass
class AdapterInfo:
    path: Path
    config: dict
    weights_file: Path
    is_pickle: bool
    shapes: dict[str, list[int]]
    base_signature: dict | None = None
    prompt_format: dict | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return int(self.config.get("r", 0))

    @property
    def alpha(self) -> float:
        return float(self.config.get("lora_alpha", self.rank))

    @property
    def peft_type(self) -> str:
        return str(self.config.get("peft_type", "LORA")).upper()

    def module_parts(self) -> dict[str, dict[str, list[int]]]:
        """``{module_path: {part: shape}}`` with part ``lora_A``/``lora_B``/... or ``weight`` (a full copy)."""
        modules: dict[str, dict[str, list[int]]] = {}
        for key, shape in self.shapes.items():
            name = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
            name = _SAVED_BASE.sub("", name)  # PEFT's save_embedding_layers stores "<module>.base_layer.weight"
            match = _PART.search(name)
            if match:
                module, part = name[: match.start()], match.group(1)
            else:
                module, _, part = name.rpartition(".")
            modules.setdefault(module, {})[part] = shape
        return modules


def module_path_candidates(module: str) -> tuple[str, ...]:
    """The names an adapter's module path may have in the base, most likely first: adapter paths
    sometimes carry one more or one fewer ``model.`` prefix than the checkpoint."""
    return (module, f"model.{module}", module.removeprefix("model."))


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AdapterError(f"{what} {path} is not valid JSON: {error}", "re-save or re-download the adapter") from error
    if not isinstance(data, dict):
        raise AdapterError(f"{what} {path} is not a JSON object")
    return data


def read_adapter_config(path: Path) -> dict:
    """An adapter folder's ``adapter_config.json``, or one clear error (missing, not JSON, not an object)."""
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        nested = sorted(p.parent.name for p in path.glob(f"*/{CONFIG_FILE}")) if path.is_dir() else []
        hint = f"it has adapters in sub-folders: {', '.join(nested)}" if nested else "pass a folder made by PEFT or lorakit"
        raise AdapterError(f"'{path}' is not a LoRA adapter folder (no {CONFIG_FILE})", hint)
    return _read_json(config_path, "adapter config")


def read_adapter(path: Path, allow_pickle: bool = False) -> AdapterInfo:
    path = Path(path)
    config = read_adapter_config(path)
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise AdapterError(f"'{path}' is a {peft_type} adapter, not a LoRA", "lorakit handles LoRA adapters only")

    safetensors_path = path / SAFETENSORS_FILE
    pickle_path = path / PICKLE_FILE
    if safetensors_path.is_file():
        shapes = {name: list(info["shape"]) for name, info in read_header(safetensors_path).items()}
        weights_file, is_pickle = safetensors_path, False
    elif pickle_path.is_file():
        if not allow_pickle:
            raise AdapterError(
                f"'{path}' has only a pickle weight file ({PICKLE_FILE}), which can run code when loaded",
                "convert it to safetensors, or pass --allow-pickle to load it with torch.load(weights_only=True)",
            )
        from lorakit.store.pickles import load_pickle

        state = load_pickle(pickle_path, f"adapter '{path.name}'")
        shapes = {name: list(tensor.shape) for name, tensor in state.items()}
        weights_file, is_pickle = pickle_path, True
    else:
        raise AdapterError(f"'{path}' has {CONFIG_FILE} but no weights ({SAFETENSORS_FILE})", "the adapter was not saved completely")

    if not shapes:
        raise AdapterError(f"adapter '{path}' holds no tensors (an empty adapter)", "it was saved before any LoRA layer existed; retrain or re-download it")
    empty = [name for name, shape in shapes.items() if any(size == 0 for size in shape)]
    if empty:
        raise AdapterError(f"adapter '{path}' has empty tensors ({empty[0]} has shape {shapes[empty[0]]})")

    info = AdapterInfo(path, config, weights_file, is_pickle, shapes)
    check_ranks(info)
    signature = path / BASE_SIGNATURE_FILE
    if signature.is_file():
        info.base_signature = _read_json(signature, "base signature")
    prompt = path / PROMPT_FORMAT_FILE
    if prompt.is_file():
        info.prompt_format = _read_json(prompt, "prompt format")
    return info


def base_signature(model_config: dict) -> dict:
    """The few config values that decide whether an adapter fits a base."""
    return {key: model_config[key] for key in SIGNATURE_KEYS if key in model_config}


def write_base_signature(adapter_dir: Path, model_config: dict) -> None:
    """Record what base an adapter was made for, so a mismatch is named before weights load."""
    (Path(adapter_dir) / BASE_SIGNATURE_FILE).write_text(json.dumps(base_signature(model_config), indent=2) + "\n")


def write_prompt_format(adapter_dir: Path, template: str, **details) -> None:
    """Record the prompt template an adapter was trained with (``generate`` warns on another)."""
    (Path(adapter_dir) / PROMPT_FORMAT_FILE).write_text(json.dumps({"template": template, **details}, indent=2) + "\n")
