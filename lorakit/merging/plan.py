"""Which output tensor comes from which base tensor, and which LoRA updates land on it.

Tied embeddings need care: when the base ties ``lm_head`` to ``embed_tokens`` (the checkpoint holds
only the embedding) and a LoRA changes one of the two, the unmerged model changes only that one.
Merging into the shared tensor would change both, so the plan unties them: it writes a separate
``lm_head.weight`` and sets ``tie_word_embeddings`` to false.

Finding the tie takes the model class (transformers, a few seconds to import), so it is only asked
when an update could touch an embedding: a tensor with a vocabulary-sized dimension, or a tensor the
checkpoint does not store (a tied head). Updates to attention and MLP weights alone never need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import AdapterError
from lorakit.merging.checkpoint import TensorSource
from lorakit.merging.lora_weights import LoadedLora, ModuleLora
from lorakit.merging.safetensors_io import FLOAT_DTYPES
from lorakit.output.console import warn
from lorakit.store.adapters import module_path_candidates


@dataclass
class Update:
    kind: str  # "lora", "dora", "bias" or "replace"
    lora: LoadedLora
    module: ModuleLora | None = None
    tensor: object = None  # the full copy for "replace"


@dataclass
class OutTensor:
    name: str
    source: str
    shape: tuple[int, ...]
    dtype: str
    updates: list[Update] = field(default_factory=list)


@dataclass
class MergePlan:
    tensors: list[OutTensor]
    untied: bool = False

    def updated(self) -> list[OutTensor]:
        return [tensor for tensor in self.tensors if tensor.updates]

    def total_bytes(self) -> int:
        from lorakit.merging.safetensors_io import nbytes

        return sum(nbytes(tensor.dtype, tensor.shape) for tensor in self.tensors)


def tied_embeddings(model_path: Path, trust_remote_code: bool = False) -> tuple[str, str] | None:
    """``(output_weight, input_weight)`` names when the model ties them, else ``None`` (built on the meta device)."""
    import torch

    from lorakit.output.quiet import quiet_libraries

    quiet_libraries()
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):  # accelerate's init_empty_weights would hide the tie
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    output, inputs = model.get_output_embeddings(), model.get_input_embeddings()
    if output is None or inputs is None or output.weight is not inputs.weight:
        return None
    names = {id(module): name for name, module in model.named_modules()}
    return f"{names[id(output)]}.weight", f"{names[id(inputs)]}.weight"


def _vocab_sizes(model_path: Path) -> set[int] | None:
    """Every ``vocab_size`` in the model's config (text and top level); ``None`` when it names none."""
    import json

    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    sections = [config] + [value for value in config.values() if isinstance(value, dict)]
    sizes = {int(section["vocab_size"]) for section in sections if isinstance(section.get("vocab_size"), int)}
    return sizes or None


def may_touch_embeddings(shapes: list[tuple[int, ...]], missing: bool, model_path: Path) -> bool:
    """Whether the tie between input and output embeddings can matter for these updated tensor shapes."""
    if missing:
        return True
    if not shapes:
        return False
    vocab = _vocab_sizes(model_path)
    if vocab is None:
        return True  # cannot tell which tensors are embeddings: ask the model
    return any(size in vocab for shape in shapes for size in shape)


def _find(source_names: set[str], module: str, leaf: str) -> str | None:
    for candidate in module_path_candidates(module):
        if f"{candidate}.{leaf}" in source_names:
            return f"{candidate}.{leaf}"
    return None


def _out_dtype(source_dtype: str, wanted: str | None) -> str:
    return wanted if wanted and source_dtype in FLOAT_DTYPES else source_dtype


def build_plan(source: TensorSource, loras: list[LoadedLora], model_path: Path, out_dtype: str | None = None, trust_remote_code: bool = False) -> MergePlan:
    names = source.names()
    name_set = set(names)
    updates: dict[str, list[Update]] = {}
    missing: dict[str, list[Update]] = {}  # updates whose weight is not stored (a tied output embedding)

    def add(module: str, leaf: str, update: Update) -> None:
        target = _find(name_set, module, leaf)
        if target is None:
            if leaf == "bias":
                raise AdapterError(f"adapter '{update.lora.path.name}' changes the bias of {module}, but the base has no {module}.bias")
            missing.setdefault(f"{module}.{leaf}", []).append(update)
        else:
            updates.setdefault(target, []).append(update)

    for lora in loras:
        if lora.replacements and lora.weight != 1.0:
            warn(f"{lora.name}: full-module copies (modules_to_save: {', '.join(sorted(lora.replacements))}) are used as they are; the weight {lora.weight:g} scales only the LoRA updates")
        for module, record in lora.modules.items():
            add(module, "weight", Update("dora" if record.magnitude is not None else "lora", lora, record))
            if record.bias is not None:
                add(module, "bias", Update("bias", lora, record))
        for module, tensors in lora.replacements.items():
            for leaf, tensor in tensors.items():
                add(module, leaf, Update("replace", lora, tensor=tensor))

    for target, items in list(updates.items()) + list(missing.items()):
        replacing = [item.lora.name for item in items if item.kind == "replace"]
        if len(replacing) > 1:
            raise AdapterError(f"LoRAs {' and '.join(replacing)} both replace {target} (modules_to_save); they cannot be merged together", "merge them one at a time")
        if replacing:  # the full copy first, LoRA updates of other adapters on top of it
            items.sort(key=lambda item: item.kind != "replace")

    untied = False
    extra: list[OutTensor] = []
    touching = may_touch_embeddings([tuple(source.shape(name)) for name in updates], bool(missing), model_path)
    tie = tied_embeddings(model_path, trust_remote_code) if touching else None
    if tie is not None:
        output_name, input_name = tie
        head_updates = [missing.pop(key) for key in list(missing) if _find({output_name}, key.rsplit(".", 1)[0], "weight") == output_name]
        if head_updates or output_name in updates or input_name in updates:
            untied = True  # the unmerged model changes only one of the two; keep them apart
            if output_name not in name_set:  # stored once: write the head separately, from the embeddings
                extra.append(OutTensor(output_name, input_name, source.shape(input_name), "", head_updates[0] if head_updates else []))
    if missing:
        key = sorted(missing)[0]
        raise AdapterError(
            f"adapter '{missing[key][0].lora.path.name}' changes {key}, which is not among the checkpoint's tensors",
            "the checkpoint stores this model under other tensor names; merge with PEFT's merge_and_unload instead",
        )

    tensors = [OutTensor(name, name, tuple(source.shape(name)), _out_dtype(source.dtype(name), out_dtype), updates.get(name, [])) for name in names]
    for item in extra:
        item.dtype = _out_dtype(source.dtype(item.source), out_dtype)
        tensors.append(item)
    for tensor in tensors:
        for update in tensor.updates:
            _check_shape(tensor, update)
            if update.kind != "bias" and update.kind != "replace" and tensor.dtype not in FLOAT_DTYPES:
                raise AdapterError(f"{tensor.name} is stored as {tensor.dtype} (quantized?); a LoRA cannot be merged into it", "pass --dequantize")
    return MergePlan(tensors, untied)


def _check_shape(tensor: OutTensor, update: Update) -> None:
    if update.kind == "replace":
        shape = tuple(update.tensor.shape)
    elif update.kind == "bias":
        shape = (update.module.B.shape[0],)
    else:
        record = update.module
        out_features, in_features = record.B.shape[0], record.A.shape[1]
        shape = (in_features, out_features) if record.kind == "embedding" or record.fan_in_fan_out else (out_features, in_features)
    if shape != tuple(tensor.shape):
        raise AdapterError(
            f"adapter '{update.lora.path.name}' does not fit this base: it changes {tensor.name} with shape {list(shape)}, the base has {list(tensor.shape)}",
            "use the base model the adapter was trained on",
        )
