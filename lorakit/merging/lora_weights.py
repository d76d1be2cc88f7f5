"""Load a PEFT LoRA adapter's tensors, grouped by the module they change, with each module's scaling.

A LoRA changes a weight by ``scaling * B @ A`` with ``scaling = alpha / r`` (``alpha / sqrt(r)`` with
rsLoRA); ``alpha_pattern`` overrides alpha per module the way PEFT matches it (a suffix regex). The
user's weight is kept apart from the scaling so exports can fold them differently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import AdapterError
from lorakit.store.adapter_checks import check_finite, pattern_value
from lorakit.store.adapters import AdapterInfo
from lorakit.store.families import is_param_wrapper

_PREFIX = "base_model.model."
_LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
    r"(?:\.(?P<adapter>[^.]+))?(?:\.(?P<leaf>weight|bias))?$"
)
# modules_to_save copies (".modules_to_save.<adapter>") and saved embedding bases (".base_layer", PEFT's
# save_embedding_layers) are full replacements of the module's own tensor.
_SAVED_COPY = re.compile(r"\.modules_to_save\.[^.]+(?=\.)|\.base_layer(?=\.)")


@dataclass
class ModuleLora:
    """One module's LoRA: ``A`` [r, in], ``B`` [out, r] (embeddings: ``A`` [r, vocab], ``B`` [dim, r])."""

    module: str
    kind: str  # "linear" or "embedding"
    A: object
    B: object
    scaling: float
    fan_in_fan_out: bool = False
    magnitude: object = None  # DoRA magnitude vector [out]
    bias: object = None  # lora_B bias (PEFT lora_bias=True)
    expert_of: str = ""  # set for one expert's share of a LoRA on fused expert weights (target_parameters)

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    def delta(self, factor: float = 1.0):
        """``factor * scaling * B @ A`` in fp32, in the layout of the base weight."""
        delta = (self.B.float() @ self.A.float()) * (factor * self.scaling)
        if self.kind == "embedding" or self.fan_in_fan_out:
            delta = delta.T  # embeddings are stored [vocab, dim]; Conv1D stores [in, out]
        return delta


@dataclass
class LoadedLora:
    name: str
    path: Path
    weight: float
    info: AdapterInfo
    modules: dict[str, ModuleLora] = field(default_factory=dict)
    replacements: dict[str, dict[str, object]] = field(default_factory=dict)
    """``modules_to_save``: full copies, ``{module: {"weight": tensor, "bias": tensor}}``."""

    @property
    def uses_dora(self) -> bool:
        return any(module.magnitude is not None for module in self.modules.values())

    @property
    def expert_wrappers(self) -> list[str]:
        """The expert modules whose fused weights this LoRA changes (PEFT target_parameters)."""
        return sorted({module.expert_of for module in self.modules.values() if module.expert_of})


def module_scaling(config: dict, module: str, rank: int) -> float:
    alpha = float(pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", rank)))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _refuse_unsupported(info: AdapterInfo, model_config: dict | None) -> None:
    config, label = info.config, f"adapter '{info.path.name}'"
    if config.get("target_parameters") and model_config is None:
        raise AdapterError(f"{label} targets expert weights directly (target_parameters); lorakit merges those into a base model only",
                           "merge it into its base (lorakit merge MODEL --lora ...) instead of --adapters-only")
    if config.get("alora_invocation_tokens"):
        raise AdapterError(f"{label} is an activated LoRA (aLoRA): it only acts after its invocation tokens, so it cannot be merged into the weights")
    if config.get("layer_replication"):
        raise AdapterError(f"{label} uses layer_replication, which changes the model's structure and cannot be merged by lorakit")
    if config.get("trainable_token_indices"):
        raise AdapterError(f"{label} trains single token embeddings (trainable_token_indices), which lorakit cannot merge yet")


def load_state(info: AdapterInfo) -> dict:
    if info.is_pickle:
        from lorakit.store.pickles import load_pickle

        return load_pickle(info.weights_file, f"adapter '{info.path.name}'")
    from safetensors.torch import load_file

    return load_file(str(info.weights_file))


def load_lora(info: AdapterInfo, name: str, weight: float = 1.0, model_config: dict | None = None) -> LoadedLora:
    """The adapter's LoRAs by module; with the base's ``model_config``, LoRAs on fused expert weights
    (``target_parameters``) are split into one LoRA per expert tensor of the checkpoint."""
    _refuse_unsupported(info, model_config)
    config, label = info.config, f"adapter '{info.path.name}'"
    parts: dict[str, dict[str, object]] = {}
    loaded = LoadedLora(name, info.path, weight, info)
    state = load_state(info)
    check_finite(info, state)  # the pre-flight's rule: refused before anything is merged
    for key, tensor in state.items():
        key = key.removeprefix(_PREFIX)
        match = _LORA_KEY.match(key)
        if match:
            part, leaf, adapter = match["part"], match["leaf"], match["adapter"]
            if leaf is None and adapter in ("weight", "bias"):
                leaf = adapter
            parts.setdefault(match["module"], {})[f"{part}.{leaf or 'weight'}"] = tensor
            continue
        if "token_adapter" in key or "trainable_tokens" in key:
            raise AdapterError(f"{label} trains single token embeddings ({key}), which lorakit cannot merge yet")
        module, _, leaf = _SAVED_COPY.sub("", key).rpartition(".")
        if leaf not in ("weight", "bias") or not module:
            raise AdapterError(f"{label} has a tensor lorakit does not know how to merge: {key}")
        loaded.replacements.setdefault(module, {})[leaf] = tensor

    fan_in_fan_out = bool(config.get("fan_in_fan_out"))
    for module, found in parts.items():
        if "lora_A.weight" in found and "lora_B.weight" in found:
            kind, A, B = "linear", found["lora_A.weight"], found["lora_B.weight"]
        elif "lora_embedding_A.weight" in found and "lora_embedding_B.weight" in found:
            kind, A, B = "embedding", found["lora_embedding_A.weight"], found["lora_embedding_B.weight"]
        else:
            raise AdapterError(f"{label} is incomplete: {module} has {', '.join(sorted(found))} but not both A and B")
        if A.dim() != 2 or B.dim() != 2:
            raise AdapterError(f"{label} has a convolution LoRA on {module} (A has shape {list(A.shape)}); lorakit merges Linear and Embedding LoRAs only")
        magnitude = found.get("lora_magnitude_vector.weight")
        if magnitude is not None and kind == "embedding":
            raise AdapterError(f"{label} uses DoRA on the embedding {module}, which lorakit cannot merge; merge it with PEFT's merge_and_unload instead")
        if config.get("target_parameters") and is_param_wrapper(module, config["target_parameters"]):
            from lorakit.merging.experts import split_expert_lora

            key, rank, split = split_expert_lora(module, A, B, model_config, label)
            scaling = module_scaling(config, key, rank)
            for expert_module, (A_e, B_e) in split.items():
                loaded.modules[expert_module] = ModuleLora(expert_module, "linear", A_e, B_e, scaling, expert_of=key)
            continue
        if model_config is not None:
            module = checkpoint_module_name(module, model_config)
        rank = int(A.shape[0])
        loaded.modules[module] = ModuleLora(
            module, kind, A, B, module_scaling(config, module, rank),
            fan_in_fan_out=fan_in_fan_out and kind == "linear", magnitude=magnitude, bias=found.get("lora_B.bias"),
        )
    if not loaded.modules and not loaded.replacements:
        raise AdapterError(f"{label} holds no LoRA tensors")
    return loaded


def checkpoint_module_name(module: str, model_config: dict) -> str:
    """The checkpoint's name for a module PEFT names after the runtime model (Mixtral's router
    ``mlp.gate`` is stored as ``block_sparse_moe.gate``)."""
    from lorakit.store.families import family_of

    family = family_of(model_config)
    for runtime, stored in family.renames if family else ():
        if module.endswith(runtime):
            return module.removesuffix(runtime) + stored
    return module
