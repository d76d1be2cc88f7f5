"""Check that an adapter fits a base model before any weight is loaded.

The base's module shapes come from its config on the meta device (no weights read), so a mismatch
is named in one line ("hidden_size 4096 vs 576") instead of a wall of ``size mismatch`` errors.
A caller that has the checkpoint's tensor shapes at hand (the merge reads the safetensors headers
anyway) passes them: when they show that every module fits, the model class (transformers, seconds
to import) is never built; any doubt falls back to the full check and its exact message.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from lorakit.errors import AdapterError, ModelNotFound
from lorakit.store.adapters import SIGNATURE_KEYS, AdapterInfo, module_path_candidates
from lorakit.store.families import is_param_wrapper, param_wrapper_module

_LAYER = re.compile(r"\.layers\.(\d+)\.|\.h\.(\d+)\.|\.blocks\.(\d+)\.")


def read_model_config(model_path: Path) -> dict:
    config_path = Path(model_path) / "config.json"
    if not config_path.is_file():
        raise ModelNotFound(f"'{model_path}' has no config.json", "pass a Hugging Face model folder or a .gguf file")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as error:
        raise ModelNotFound(f"{config_path} is not valid JSON: {error}") from error
    text = config.get("text_config")
    return {**text, **config} if isinstance(text, dict) else config


@lru_cache(maxsize=8)
def _module_shapes_cached(model_path: str, mtime: float, trust_remote_code: bool) -> dict[str, dict]:
    from lorakit.output.quiet import quiet_libraries

    quiet_libraries()
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return module_records(model)


def module_records(model) -> dict[str, dict]:
    """``{module name: record}`` for every module with a weight (kind, shape, in/out sizes) and every
    module holding fused 3-D expert weights (``{"kind": "Experts", "params": {name: shape}}``)."""
    import torch

    shapes: dict[str, dict] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            experts = {key: list(param.shape) for key, param in module.named_parameters(recurse=False) if param.dim() == 3}
            if experts:  # fused mixture-of-experts weights [experts, out, in] (PEFT target_parameters)
                shapes[name] = {"kind": "Experts", "params": experts}
            continue
        record = {"weight": list(weight.shape), "kind": type(module).__name__}
        if isinstance(module, torch.nn.Linear):  # bitsandbytes layers included ("linear" marks them all)
            record["in"], record["out"], record["linear"] = module.in_features, module.out_features, True
        elif isinstance(module, torch.nn.Embedding):
            record["in"], record["out"] = module.num_embeddings, module.embedding_dim
        elif weight.dim() == 2 and type(module).__name__ == "Conv1D":  # GPT-2 style Conv1D stores [in, out]
            record["in"], record["out"] = weight.shape[0], weight.shape[1]
        elif weight.dim() == 2:  # a router or another [out, in] weight (PEFT target_parameters)
            record["in"], record["out"] = weight.shape[1], weight.shape[0]
        shapes[name] = record
    return shapes


def base_module_shapes(model_path: Path, trust_remote_code: bool = False) -> dict[str, dict]:
    path = Path(model_path)
    return _module_shapes_cached(str(path.resolve()), (path / "config.json").stat().st_mtime, trust_remote_code)


def _dimension_name(value: int, config: dict) -> str:
    for key in ("hidden_size", "intermediate_size", "vocab_size", "num_attention_heads"):
        if config.get(key) == value:
            return f" ({key})"
    return ""


def _strip_to_base(module: str, shapes: dict) -> str | None:
    """Adapter module paths sometimes carry one more or one fewer wrapper prefix than the base."""
    return next((candidate for candidate in module_path_candidates(module) if candidate in shapes), None)


def check_signature(adapter: AdapterInfo, config: dict) -> None:
    sig = adapter.base_signature or {}
    for key in SIGNATURE_KEYS:
        if key in sig and key in config and sig[key] != config[key]:
            raise AdapterError(
                f"adapter '{adapter.path.name}' was made for a base with {key} {sig[key]}, this base has {key} {config[key]}",
                "use the base model the adapter was trained on",
            )


def fits_checkpoint(adapter: AdapterInfo, tensor_shapes: dict[str, tuple[int, ...]]) -> bool:
    """True when the checkpoint's tensor shapes alone show that the adapter fits (no warnings to give).

    Every module the adapter changes must be stored as a 2-D ``<module>.weight`` (Linear ``[out, in]``,
    Embedding ``[vocab, dim]``) whose sizes match the adapter's A and B. ``False`` means only "cannot
    tell from the headers" (a tied head the checkpoint does not store, fan_in_fan_out layers, packed
    quantized weights, a difference to explain): the model is then built and checked in full.
    """
    if adapter.config.get("fan_in_fan_out"):
        return False  # GPT-2 style Conv1D layers: their kind decides the layout and the warning
    for module, parts in adapter.module_parts().items():
        weight = next((tuple(tensor_shapes[f"{name}.weight"]) for name in module_path_candidates(module) if f"{name}.weight" in tensor_shapes), None)
        if weight is None or len(weight) != 2:
            return False
        rows, columns = weight
        for part, shape in parts.items():
            if part == "weight":
                if tuple(shape) != weight:
                    return False
            elif len(shape) == 2:
                expected = {"lora_A": (shape[1], columns), "lora_B": (shape[0], rows),
                            "lora_embedding_A": (shape[1], rows), "lora_embedding_B": (shape[0], columns)}.get(part)
                if expected is not None and expected[0] != expected[1]:
                    return False
    return True


def check_adapter_fits(adapter: AdapterInfo, model_path: Path, trust_remote_code: bool = False,
                       tensor_shapes: dict[str, tuple[int, ...]] | None = None) -> list[str]:
    """Raise :class:`AdapterError` naming the first difference; return warnings for softer issues.

    ``tensor_shapes``: the checkpoint's ``{tensor name: shape}``, when the caller has it (see :func:`fits_checkpoint`).
    """
    config = read_model_config(model_path)
    check_signature(adapter, config)
    if tensor_shapes is not None and fits_checkpoint(adapter, tensor_shapes):
        return []
    shapes = base_module_shapes(model_path, trust_remote_code)
    layers = int(config.get("num_hidden_layers", 0) or 0)
    arch = (config.get("architectures") or [config.get("model_type", "this model")])[0]
    label = f"adapter '{adapter.path.name}'"
    warnings: list[str] = []

    for module, parts in sorted(adapter.module_parts().items()):
        if is_param_wrapper(module, adapter.config.get("target_parameters")):
            _check_expert_lora(label, module, parts, shapes, config)
            continue
        base_name = _strip_to_base(module, shapes)
        if base_name is None:
            match = _LAYER.search(f".{module}.")
            index = next((int(g) for g in match.groups() if g is not None), None) if match else None
            if index is not None and layers and index >= layers:
                raise AdapterError(f"{label} has layer {index}, this base has {layers} layers (num_hidden_layers)", "use the base model the adapter was trained on")
            leaf = module.rsplit(".", 1)[-1]
            raise AdapterError(
                f"{label} targets '{leaf}' ({module}), which this base ({arch}) does not have",
                "the adapter was made for another architecture",
            )
        base = shapes[base_name]
        base_in, base_out = base.get("in"), base.get("out")
        for part, shape in parts.items():
            expected = None
            if part == "lora_A" and len(shape) == 2:
                expected, got, which = base_in, shape[1], "input size"
            elif part == "lora_B" and len(shape) == 2:
                expected, got, which = base_out, shape[0], "output size"
            elif part == "lora_embedding_A" and len(shape) == 2:
                expected, got, which = base_in, shape[1], "vocabulary size"
            elif part == "lora_embedding_B" and len(shape) == 2:
                expected, got, which = base_out, shape[0], "embedding size"
            elif part == "weight":
                if list(shape) != base["weight"]:
                    dim = next((i for i, (a, b) in enumerate(zip(shape, base["weight"])) if a != b), 0)
                    raise AdapterError(
                        f"{label} replaces {module}.weight with shape {list(shape)}, the base has {base['weight']}"
                        f"{_dimension_name(base['weight'][dim], config)}",
                        "the adapter was made for another base (vocabulary or size differs)",
                    )
                continue
            if expected is not None and got != expected:
                raise AdapterError(
                    f"{label} does not fit this base: {module} {which} is {got} in the adapter and {expected} in the base"
                    f"{_dimension_name(expected, config)}",
                    "use the base model the adapter was trained on",
                )
    if adapter.config.get("fan_in_fan_out") and not any(rec["kind"] == "Conv1D" for rec in shapes.values()):
        warnings.append(f"{label} sets fan_in_fan_out, which this base's Linear layers do not use")
    return warnings


def _check_expert_lora(label: str, module: str, parts: dict, shapes: dict, config: dict) -> None:
    """A LoRA on fused expert weights: A [r x experts, in] and B [out, r x experts] fit one of the
    module's 3-D parameters [experts, out, in]."""
    owner = param_wrapper_module(module)
    base_name = _strip_to_base(owner, shapes)
    record = shapes.get(base_name) if base_name else None
    if record is None or record.get("kind") != "Experts":
        raise AdapterError(f"{label} targets the expert weights of {owner}, which this base does not have", "the adapter was made for another architecture")
    A, B = parts.get("lora_A"), parts.get("lora_B")
    if not A or not B or len(A) != 2 or len(B) != 2:
        return  # incomplete pairs are named by the adapter's own checks
    for shape in record["params"].values():
        experts, out_features, in_features = shape
        if (B[0], A[1]) == (out_features, in_features) and A[0] % experts == 0:
            return
    sizes = ", ".join(f"{name} {shape}" for name, shape in record["params"].items())
    raise AdapterError(f"{label} does not fit this base: its LoRA on {owner} has A {A} and B {B}, the experts hold {sizes}",
                       "use the base model the adapter was trained on")
