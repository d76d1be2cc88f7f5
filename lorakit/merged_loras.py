"""Inference LoRAs folded into the base weights, with the touched originals kept for exact undo.

PEFT applies a LoRA unmerged: every wrapped layer pays an extra module call, two small matmuls, a
scale and an add per token. At batch 1 that overhead cost 5-20 % of generation speed in
``benchmarks/generate_bench.py``. For plain LoRAs on ordinary ``nn.Linear`` layers lorakit instead
writes ``W = W0 + sum_i w_i * s_i * B_i A_i`` into the weights (computed in fp32 or better) and keeps
a copy of each touched ``W0``, so removing, re-weighting or switching LoRAs restores the base bit for
bit without reloading it. The price is host memory for a copy of every touched weight (about 10 %
of the model for a q,v LoRA, 80 % for an all-linear one), kept while the session lives;
``LORAKIT_PEFT_INFERENCE=1`` keeps PEFT's unmerged path instead. Anything else (DoRA, embedding LoRAs, ``modules_to_save``, rank/alpha
patterns, quantized layers, training) stays on PEFT's path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.adapters import AdapterInfo

_PREFIX = "base_model.model."


def adapter_is_mergeable(adapter: AdapterInfo) -> bool:
    config = adapter.config
    if adapter.is_pickle or config.get("use_dora") or config.get("modules_to_save") or config.get("fan_in_fan_out"):
        return False
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("lora_bias") or config.get("bias", "none") != "none":
        return False
    if config.get("target_parameters") or config.get("trainable_token_indices") or config.get("alora_invocation_tokens"):
        return False
    return all(set(parts) == {"lora_A", "lora_B"} for parts in adapter.module_parts().values())


@dataclass
class _Adapter:
    weight: float
    scaling: float
    factors: dict[str, tuple] = field(default_factory=dict)  # module name -> (A, B) on the module's device


class MergedLoras:
    """Weighted LoRAs merged into a model's Linear weights; exact undo from kept originals."""

    def __init__(self, model):
        self.model = model
        self.originals: dict[str, object] = {}
        self.adapters: dict[str, _Adapter] = {}
        self.active: list[str] = []
        self._weights: dict[str, object] = {}

    def _module(self, name: str):
        import torch

        for candidate in (name, f"model.{name}", name.removeprefix("model.")):
            try:
                module = self.model.get_submodule(candidate)
            except AttributeError:
                continue
            embeddings = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
            tied = embeddings is not None and module is not embeddings and getattr(module, "weight", None) is getattr(embeddings, "weight", 0)
            if type(module) is torch.nn.Linear and module.weight.dtype.is_floating_point and not tied:
                return candidate, module
            return None, None
        return None, None

    def can_take(self, adapter: AdapterInfo) -> bool:
        if not adapter_is_mergeable(adapter):
            return False
        return all(self._module(name)[1] is not None for name in adapter.module_parts())

    def add(self, name: str, path: Path, adapter: AdapterInfo, weight: float) -> None:
        import torch
        from safetensors.torch import load_file

        tensors = load_file(str(Path(path) / "adapter_model.safetensors"))
        rank = adapter.rank
        scaling = adapter.alpha / (math.sqrt(rank) if adapter.config.get("use_rslora") else rank)
        entry = _Adapter(weight, scaling)
        for key, tensor in tensors.items():
            if ".lora_A." not in key:
                continue
            module_name = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
            module_name = module_name.rsplit(".lora_A.", 1)[0]
            resolved, module = self._module(module_name)
            b_key = key.replace(".lora_A.", ".lora_B.")
            weight = module.weight
            compute = weight.dtype if weight.dtype == torch.float32 else torch.float32
            entry.factors[resolved] = (tensor.to(weight.device, compute), tensors[b_key].to(weight.device, compute))
        self.adapters[name] = entry

    def remove(self, name: str) -> None:
        self.adapters.pop(name, None)
        self.active = [n for n in self.active if n != name]

    def set_weight(self, name: str, weight: float) -> None:
        self.adapters[name].weight = weight
        self.apply(self.active)

    def apply(self, names: list[str]) -> None:
        """Make the weights equal base + the named LoRAs (others off), touching only what changes."""
        import torch

        self.active = list(names)
        touched = {module for adapter in self.adapters.values() for module in adapter.factors} | set(self.originals)
        with torch.no_grad():
            for module_name in touched:
                weight = self._weight(module_name)
                if module_name not in self.originals:
                    # Kept while the session lives, so later attach/detach cycles copy instead of clone;
                    # in host memory, so a GPU model does not pay GPU memory for the copies.
                    self.originals[module_name] = weight.detach().to("cpu", copy=True)
                original = self.originals[module_name]
                if original.device != weight.device:
                    original = original.to(weight.device, non_blocking=True)
                deltas = [(self.adapters[n].weight * self.adapters[n].scaling, self.adapters[n].factors[module_name])
                          for n in self.active if module_name in self.adapters[n].factors]
                if not deltas:
                    weight.copy_(original)
                elif weight.dtype == torch.float32:
                    # One fused W0 + s * B @ A per LoRA, written straight into the weight.
                    (scale, (a, b)), rest = deltas[0], deltas[1:]
                    torch.addmm(original, b, a, alpha=scale, out=weight)
                    for scale, (a, b) in rest:
                        weight.addmm_(b, a, alpha=scale)
                else:  # 16-bit weights: sum in fp32, round once
                    total = original.float()
                    for scale, (a, b) in deltas:
                        total.addmm_(b.float(), a.float(), alpha=scale)
                    weight.copy_(total)

    def _weight(self, module_name: str):
        weight = self._weights.get(module_name)
        if weight is None:
            weight = self._weights[module_name] = self._module(module_name)[1].weight
        return weight
