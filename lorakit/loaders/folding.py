"""Inference LoRAs folded into the base weights lazily, with exact undo.

PEFT applies a LoRA unmerged: every wrapped layer pays an extra module call, two small matmuls, a
scale and an add per token. At batch 1 that overhead cost 5-20 % of generation speed in
``benchmarks/generate_bench.py``. For plain LoRAs on ordinary ``nn.Linear`` layers lorakit instead
runs ``W = W0 + sum_i w_i * s_i * B_i A_i`` (computed in fp32 or better), so generation runs at the
base's speed.

Folding is deferred: adding, removing, re-weighting or switching LoRAs only records the wanted set,
and the weights are brought up to date right before the next forward pass reaches one of the changed
layers (a forward pre-hook that removes itself). A burst of changes (``add A``, ``add B``,
``weight A 0.5``) costs one fold, a LoRA attached and detached without a forward costs only reading
its factors, and only layers whose wanted sum changed are touched.

Undo is exact. On the CPU the base tensor itself is kept and the folded weight lives in a second
buffer; switching is swapping which tensor the parameter points at, so restoring the base copies
nothing, and returning to a sum computed before (``--compare``'s base and LoRA turns) reuses it. On an accelerator a copy of each touched base weight is kept in host memory instead (so the
accelerator does not pay for it) and copied back. Either way the price is host memory for one more
copy of every touched weight (about 10 % of the model for a q,v LoRA, 80 % for an all-linear one)
while the session lives; ``LORAKIT_PEFT_INFERENCE=1`` keeps PEFT's unmerged path instead. Anything
else (DoRA, embedding LoRAs, ``modules_to_save``, rank/alpha patterns, quantized layers, training)
stays on PEFT's path.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.store.adapters import AdapterInfo, module_path_candidates

_PREFIX = "base_model.model."
_serials = itertools.count(1)


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
    serial: int = field(default_factory=lambda: next(_serials))  # tells a re-added LoRA of the same name apart


class MergedLoras:
    """Weighted LoRAs folded into a model's Linear weights on demand; exact undo."""

    def __init__(self, model):
        self.model = model
        self.adapters: dict[str, _Adapter] = {}
        self.active: list[str] = []
        self.originals: dict[str, object] = {}  # CPU: the base tensor itself; accelerator: a host copy
        self._buffers: dict[str, object] = {}  # CPU: the tensor that holds the folded weight
        self._buffer_holds: dict[str, tuple] = {}  # CPU: which sum a buffer holds (kept while unused)
        self._folded: dict[str, tuple] = {}  # module -> ((serial, scale), ...) now in its weight
        self._modules: dict[str, tuple] = {}
        self._hooks: list = []
        self._tied = None

    # ---- resolving layers ------------------------------------------------------------------------
    def _tied_weight(self):
        if self._tied is None:
            embeddings = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
            self._tied = (getattr(embeddings, "weight", None),)
        return self._tied[0]

    def _module(self, name: str):
        """``(resolved name, nn.Linear)`` for an adapter's module name, or ``(None, None)``."""
        found = self._modules.get(name)
        if found is None:
            found = self._modules[name] = self._resolve(name)
        return found

    def _resolve(self, name: str):
        import torch

        for candidate in module_path_candidates(name):
            try:
                module = self.model.get_submodule(candidate)
            except AttributeError:
                continue
            weight = getattr(module, "weight", None)
            if (type(module) is torch.nn.Linear and weight.dtype.is_floating_point and weight.device.type != "meta"
                    and weight is not self._tied_weight()):
                return candidate, module
            return None, None
        return None, None

    def can_take(self, adapter: AdapterInfo) -> bool:
        if not adapter_is_mergeable(adapter):
            return False
        return all(self._module(name)[1] is not None for name in adapter.module_parts())

    # ---- the wanted state ------------------------------------------------------------------------
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
            base = module.weight
            compute = base.dtype if base.dtype == torch.float32 else torch.float32
            entry.factors[resolved] = (tensor.to(base.device, compute), tensors[b_key].to(base.device, compute))
        self.adapters[name] = entry

    def remove(self, name: str) -> None:
        self.adapters.pop(name, None)
        self.active = [n for n in self.active if n != name]

    def set_weight(self, name: str, weight: float) -> None:
        self.adapters[name].weight = weight
        self.apply(self.active)

    def apply(self, names: list[str]) -> None:
        """Ask for base + the named LoRAs (others off); the weights follow before the next forward."""
        self.active = list(names)
        stale = self._stale()
        self._disarm()
        for module_name in stale:
            self._hooks.append(self._module(module_name)[1].register_forward_pre_hook(self._before_forward))

    def _terms(self, module_name: str) -> list[tuple[int, float, tuple]]:
        """``(serial, scale, (A, B))`` of every active LoRA that changes this layer."""
        return [(entry.serial, entry.weight * entry.scaling, entry.factors[module_name])
                for entry in (self.adapters[n] for n in self.active) if module_name in entry.factors]

    def _wanted(self, module_name: str) -> tuple:
        return tuple((serial, scale) for serial, scale, _ in self._terms(module_name))

    def _stale(self) -> list[str]:
        touched = {module for adapter in self.adapters.values() for module in adapter.factors} | set(self._folded)
        return [module for module in touched if self._wanted(module) != self._folded.get(module, ())]

    # ---- folding -----------------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Whether the weights still differ from the wanted set (the next forward will fold)."""
        return bool(self._hooks)

    def _before_forward(self, module, args):
        self.sync()

    def _disarm(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def sync(self) -> None:
        """Bring every stale layer's weight to base + the active LoRAs now."""
        import torch

        self._disarm()
        # Out of inference mode: a fold triggered inside it must not leave inference-only tensors
        # in the model's parameters.
        with torch.inference_mode(False), torch.no_grad():
            for module_name in self._stale():
                terms = self._terms(module_name)
                wanted = tuple((serial, scale) for serial, scale, _ in terms)
                self._fold(module_name, self._module(module_name)[1].weight, wanted, [(scale, factors) for _, scale, factors in terms])
                if wanted:
                    self._folded[module_name] = wanted
                else:
                    self._folded.pop(module_name, None)

    def _fold(self, module_name: str, weight, wanted: tuple, deltas: list) -> None:
        import torch

        on_cpu = weight.device.type == "cpu"
        if module_name not in self.originals:
            # The first fold of a layer keeps its base: on the CPU the tensor itself (the parameter is
            # pointed elsewhere while folded), elsewhere a host copy so the accelerator does not pay.
            self.originals[module_name] = weight.data if on_cpu else weight.detach().to("cpu", copy=True)
        original = self.originals[module_name]
        if on_cpu:
            if not deltas:
                weight.data = original
                return
            target = self._buffers.get(module_name)
            if target is not None and self._buffer_holds.get(module_name) == wanted:
                weight.data = target  # back to a sum computed before (e.g. --compare's base/LoRA turns)
                return
            if target is None:
                target = self._buffers[module_name] = torch.empty_like(original)
            self._buffer_holds.pop(module_name, None)
        else:
            original = original.to(weight.device, non_blocking=True)
            target = weight.data
            if not deltas:
                target.copy_(original)
                return
        if target.dtype == torch.float32:
            (scale, (a, b)), rest = deltas[0], deltas[1:]
            torch.addmm(original, b, a, alpha=scale, out=target)  # one fused W0 + s * B @ A
            for scale, (a, b) in rest:
                target.addmm_(b, a, alpha=scale)
        else:  # 16-bit weights: sum in fp32, round once
            total = original.float()
            for scale, (a, b) in deltas:
                total.addmm_(b.float(), a.float(), alpha=scale)
            target.copy_(total)
        if on_cpu:
            self._buffer_holds[module_name] = wanted
            weight.data = target
