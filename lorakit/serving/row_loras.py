"""Per-row LoRA deltas in one forward pass: rows of a batch with different adapters (or mixtures).

The S-LoRA/Punica idea in plain PyTorch, shaped for a CPU or a small GPU batch: for each layer an
adapter changes, the A factors of the adapters *present in this batch* are concatenated once
(``A_cat``: [in, R], cached per set of adapters) and the layer's output gets

    out += ((x @ A_cat) * S_row) @ B_cat           S_row[b, j] = w_{b,i} * alpha_i / r_i

where column j belongs to adapter i and w_{b,i} is row b's weight for it (0 when the row does not
use it). Layers that read the same input (q/k/v, gate/up) share one ``x @ A`` and one scale; each
then adds its slice ``@ B_cat`` with one fused ``addmm_``. No per-row Python loop, no gather of
per-row weight copies, and the plan is reused while the batch's mixes stay the same; a base-only
row has a zero scale row and gets exactly ``out``.
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


_SHARED_INPUT = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up",
                 "w1": "gate_up", "w3": "gate_up", "query": "qkv", "key": "qkv", "value": "qkv"}


def _input_group(module: str) -> tuple:
    """Layers that read the same input in transformers' decoder blocks (q/k/v, gate/up) share one ``x @ A``.

    Only a guess from the names; the hook checks that the input really is the same tensor before
    reusing the product, so a wrong guess costs a matmul, never a wrong answer.
    """
    parent, _, leaf = module.rpartition(".")
    kind = _SHARED_INPUT.get(leaf)
    return (parent, kind) if kind else (module, None)


class RowLoras:
    """Forward hooks on the layers loaded adapters touch; :meth:`set_rows` says what each row uses."""

    def __init__(self, model):
        self.model = model
        self.adapters: dict[str, RowAdapter] = {}
        self._modules: dict[str, object] = {}
        self._hooks: dict[str, object] = {}
        self._plan: dict[str, tuple] | None = None
        self._plans: dict[tuple, dict | None] = {}  # the rows' mixes -> plan (a batch keeps its mixes for many steps)
        self._shared = None  # (group, input, x @ A_group) of the last group computed in this forward
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
        self._plans.clear()
        for module in entry.factors:
            if module not in self._hooks:
                self._hooks[module] = self._modules[module].register_forward_hook(self._hook_for(module))
        self._cat_cache.clear()

    def unload(self, name: str) -> None:
        self.adapters.pop(name, None)
        self._cat_cache.clear()
        self._plans.clear()
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
            group, offset, rank, b_cat = entry
            x = args[0]
            shared = self._shared
            if shared is not None and shared[0] is group and shared[1] is x:
                h_all = shared[2]
            else:
                a_group, scale_group = group
                h_all = (x if x.dtype == a_group.dtype else x.to(a_group.dtype)) @ a_group
                h_all.mul_(scale_group)
                self._shared = (group, x, h_all)
            h = h_all[..., offset:offset + rank].reshape(-1, rank)
            if output.dtype == b_cat.dtype and output.is_contiguous():
                output.view(-1, b_cat.shape[1]).addmm_(h, b_cat)
            else:
                output.add_((h @ b_cat).view(output.shape).to(output.dtype))
            return output

        return hook

    def clear(self) -> None:
        """The bare base for every row (the hooks return at once)."""
        self._plan = None
        self._shared = None

    def set_rows(self, mixes) -> None:
        """``mixes[b]``: row b's ``((name, weight), ...)``; every name must be loaded."""
        self._shared = None
        key = tuple(mixes)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._build(mixes)
            if len(self._plans) > 64:
                self._plans.pop(next(iter(self._plans)))
        self._plan = plan

    def _build(self, mixes) -> dict | None:
        """Per layer: its slice of its input group's ``x @ A`` and its ``B_cat`` (see the module docstring)."""
        import torch

        present = sorted({name for mix in mixes for name, _ in mix})
        if not present:
            return None
        index = {name: i for i, name in enumerate(present)}
        weights = [[0.0] * len(present) for _ in mixes]
        for row, mix in enumerate(mixes):
            for name, weight in mix:
                weights[row][index[name]] = weight * self.adapters[name].scaling
        groups: dict[tuple, list] = {}
        for module in sorted({m for name in present for m in self.adapters[name].factors}):
            groups.setdefault(_input_group(module), []).append(module)
        plan: dict[str, tuple] = {}
        for members in groups.values():
            parts = []
            for module in members:
                users = tuple(name for name in present if module in self.adapters[name].factors)
                a_cat, b_cat, columns = self._concatenated(module, users)
                table = torch.tensor([[weights[row][index[name]] for name in users] for row in range(len(mixes))],
                                     dtype=a_cat.dtype, device=a_cat.device)
                parts.append((module, a_cat, b_cat, table.repeat_interleave(columns, dim=1)))
            if len({(a.shape[0], a.dtype, a.device) for _, a, _, _ in parts}) != 1:
                parts_groups = [[part] for part in parts]  # inputs of different sizes cannot share a matmul
            else:
                parts_groups = [parts]
            for chunk in parts_groups:
                group = (torch.cat([a for _, a, _, _ in chunk], dim=1).contiguous(),
                         torch.cat([scale for _, _, _, scale in chunk], dim=1).unsqueeze(1))  # [B, 1, R_group]
                offset = 0
                for module, a_cat, b_cat, _ in chunk:
                    plan[module] = (group, offset, a_cat.shape[1], b_cat)
                    offset += a_cat.shape[1]
        return plan

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
        self._plans.clear()
        self._plan = self._shared = None
