"""Per-row LoRA deltas in one forward pass: rows of a batch with different adapters (or mixtures).

The S-LoRA/Punica idea in plain PyTorch, shaped for a CPU or a small GPU batch: for each layer an
adapter changes, the A factors of the adapters *present in this batch* are concatenated once
(``A_cat``: [in, R], cached per set of adapters) and the layer's output gets

    out += ((x @ A_cat) * S_row) @ B_cat           S_row[b, j] = w_{b,i} * alpha_i / r_i

where column j belongs to adapter i and w_{b,i} is row b's weight for it (0 when the row does not
use it). Three small matmul-sized ops per layer for the whole batch, no per-row Python loop, no
gather of per-row weight copies; a base-only row has a zero scale row and gets exactly ``out``.
A mixture ``a:0.7+b:0.3`` is just a row with two non-zero blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.store.adapters import AdapterInfo, module_path_candidates

_PREFIX = "base_model.model."


@dataclass
class RowAdapter:
    name: str
    scaling: float
    factors: dict[str, tuple] = field(default_factory=dict)  # resolved module -> (A^T [in, r], B^T [r, out])


def adapter_scaling(adapter: AdapterInfo) -> float:
    rank = adapter.rank
    return adapter.alpha / (math.sqrt(rank) if adapter.config.get("use_rslora") else rank)


def unsupported_reason(adapter: AdapterInfo) -> str | None:
    """Why the per-row path cannot run this adapter (it needs plain A/B factors on linear layers)."""
    config = adapter.config
    for key, what in (("use_dora", "DoRA"), ("modules_to_save", "modules_to_save"), ("rank_pattern", "a rank_pattern"),
                      ("alpha_pattern", "an alpha_pattern"), ("fan_in_fan_out", "fan_in_fan_out layers")):
        if config.get(key):
            return f"it uses {what}"
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        return "it trains biases"
    for module, parts in adapter.module_parts().items():
        if set(parts) != {"lora_A", "lora_B"}:
            return f"{module} is not a plain A/B LoRA layer (embedding LoRA or full weights)"
    return None


class RowLoras:
    """Forward hooks on the layers loaded adapters touch; :meth:`set_rows` says what each row uses."""

    def __init__(self, model):
        self.model = model
        self.adapters: dict[str, RowAdapter] = {}
        self._modules: dict[str, object] = {}
        self._hooks: dict[str, object] = {}
        self._plan: dict[str, tuple] | None = None
        self._cat_cache: dict[tuple, tuple] = {}

    def _resolve(self, module: str):
        for candidate in module_path_candidates(module):
            try:
                return candidate, self.model.get_submodule(candidate)
            except AttributeError:
                continue
        raise KeyError(module)

    def load(self, name: str, path: Path, adapter: AdapterInfo) -> None:
        import torch
        from safetensors.torch import load_file

        tensors = load_file(str(Path(path) / "adapter_model.safetensors"))
        entry = RowAdapter(name, adapter_scaling(adapter))
        for key, a in tensors.items():
            if ".lora_A." not in key:
                continue
            module = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
            module = module.rsplit(".lora_A.", 1)[0]
            resolved, layer = self._resolve(module)
            weight = getattr(layer, "weight", None)
            device = weight.device if weight is not None else "cpu"
            dtype = weight.dtype if weight is not None and weight.dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.float32
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            entry.factors[resolved] = (a.t().contiguous().to(device, dtype), b.t().contiguous().to(device, dtype))
            self._modules[resolved] = layer
        self.adapters[name] = entry
        for module in entry.factors:
            if module not in self._hooks:
                self._hooks[module] = self._modules[module].register_forward_hook(self._hook_for(module))
        self._cat_cache.clear()

    def unload(self, name: str) -> None:
        self.adapters.pop(name, None)
        self._cat_cache.clear()
        still = {module for entry in self.adapters.values() for module in entry.factors}
        for module in [m for m in self._hooks if m not in still]:
            self._hooks.pop(module).remove()

    def _hook_for(self, module: str):
        def hook(layer, args, output):
            plan = self._plan
            if plan is None:
                return None
            entry = plan.get(module)
            if entry is None:
                return None
            a_cat, b_cat, scale = entry
            x = args[0]
            h = (x if x.dtype == a_cat.dtype else x.to(a_cat.dtype)) @ a_cat
            h.mul_(scale)
            delta = h @ b_cat
            output.add_(delta if delta.dtype == output.dtype else delta.to(output.dtype))
            return output

        return hook

    def clear(self) -> None:
        """The bare base for every row (the hooks return at once)."""
        self._plan = None

    def set_rows(self, mixes) -> None:
        """``mixes[b]``: row b's ``((name, weight), ...)``; every name must be loaded."""
        import torch

        present = sorted({name for mix in mixes for name, _ in mix})
        if not present:
            self._plan = None
            return
        index = {name: i for i, name in enumerate(present)}
        weights = [[0.0] * len(present) for _ in mixes]
        for row, mix in enumerate(mixes):
            for name, weight in mix:
                weights[row][index[name]] = weight * self.adapters[name].scaling
        by_signature: dict[tuple, object] = {}
        plan: dict[str, tuple] = {}
        for module in {m for name in present for m in self.adapters[name].factors}:
            users = tuple(name for name in present if module in self.adapters[name].factors)
            a_cat, b_cat, columns = self._concatenated(module, users)
            scale = by_signature.get((users, a_cat.dtype, a_cat.device))
            if scale is None:
                table = torch.tensor([[weights[row][index[name]] for name in users] for row in range(len(mixes))],
                                     dtype=a_cat.dtype, device=a_cat.device)
                scale = table.repeat_interleave(columns, dim=1).unsqueeze(1)  # [B, 1, R]
                by_signature[(users, a_cat.dtype, a_cat.device)] = scale
            plan[module] = (a_cat, b_cat, scale)
        self._plan = plan

    def _concatenated(self, module: str, users: tuple):
        import torch

        key = (module, users)
        found = self._cat_cache.get(key)
        if found is None:
            pairs = [self.adapters[name].factors[module] for name in users]
            columns = torch.tensor([a.shape[1] for a, _ in pairs], device=pairs[0][0].device)
            found = (torch.cat([a for a, _ in pairs], dim=1).contiguous(), torch.cat([b for _, b in pairs], dim=0).contiguous(), columns)
            self._cat_cache[key] = found
        return found

    def close(self) -> None:
        for handle in self._hooks.values():
            handle.remove()
        self._hooks.clear()
        self.adapters.clear()
        self._plan = None
