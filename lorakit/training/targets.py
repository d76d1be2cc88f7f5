"""Which layers a LoRA trains: ``--target-modules`` and ``--experts`` resolved per model, and the audit.

Resolution runs twice on the same records (``store.preflight.module_records``): before any weight
loads (the meta-device model), so a wrong target fails in a second, and on the loaded model, so the
LoraConfig names exactly what was checked. It never hands PEFT ``all-linear``: PEFT 0.21 expands
that differently per family (on Mixtral it adds the experts and the router itself, on Qwen-MoE it
leaves the experts out without a word), so lorakit spells the list out and decides about experts.

- ``all-linear``: every ``nn.Linear`` except the output head.
- A named projection must match a layer. On Phi-3 ``q_proj``/``k_proj``/``v_proj`` live inside the
  fused ``qkv_proj`` and ``gate_proj``/``up_proj`` inside ``gate_up_proj``: they resolve to the fused
  layer, and the audit says the LoRA covers the other parts too.
- Mixture-of-experts experts are 3-D parameters, not layers. When the targets cover the MLP
  (``all-linear``, ``gate_proj``, ``up_proj``, ``down_proj``, Mixtral's ``w1``/``w2``/``w3``) the
  routed experts would get no adapter; that is an error unless ``--experts target`` (PEFT
  ``target_parameters`` on ``mlp.experts.gate_up_proj``/``down_proj``) or ``--experts skip`` says so.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from lorakit.errors import UsageError

from lorakit.training.params import ALL_LINEAR, EXPERT_MODES
# A projection name -> the fused expert parameter holding it (gate and up share one 3-D weight).
EXPERT_PARAM_OF = {"gate_proj": "gate_up_proj", "up_proj": "gate_up_proj", "gate_up_proj": "gate_up_proj", "w1": "gate_up_proj",
                   "w3": "gate_up_proj", "down_proj": "down_proj", "w2": "down_proj"}
_LAYER_PREFIX = re.compile(r"^(?:.*\.)?layers\.\d+\.")
_HEADS = ("lm_head", "embed_out", "output")


@dataclass
class Targets:
    modules: list[str]  # LoraConfig.target_modules (leaf names)
    parameters: list[str] = field(default_factory=list)  # LoraConfig.target_parameters
    notes: list[str] = field(default_factory=list)


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _fused_layer(target: str, leaves: set[str]) -> str | None:
    from lorakit.store.families import FUSED_PARTS

    return next((fused for fused, parts in FUSED_PARTS.items() if fused in leaves and target in parts), None)


def resolve_targets(requested: list[str], experts: str, records: dict[str, dict], head: str | None = None) -> Targets:
    """The LoraConfig targets for ``--target-modules``/``--experts`` on a model's module records.

    ``records``: ``{module name: {"kind": ...}}`` with ``"Linear"`` layers and ``"Experts"`` modules
    (``{"params": {name: shape}}``); ``head``: the output head's name (left out of ``all-linear``).
    """
    if experts not in EXPERT_MODES:
        raise UsageError(f"unknown --experts '{experts}'", "use one of: " + ", ".join(EXPERT_MODES))
    linear = [name for name, record in records.items() if (record.get("linear") or record.get("kind") == "Linear") and name != head and (head or _leaf(name) not in _HEADS)]
    leaves = {_leaf(name) for name in linear}
    expert_modules = {name: record for name, record in records.items() if record.get("kind") == "Experts"}
    notes: list[str] = []
    wanted_params: set[str] = set()
    if requested == [ALL_LINEAR]:
        modules = sorted(leaves)
        wanted_params = {param for record in expert_modules.values() for param in record["params"]}
    else:
        modules, missing = [], []
        for target in requested:
            expert_param = EXPERT_PARAM_OF.get(target) if expert_modules else None
            if expert_param:
                wanted_params.add(expert_param)
            fused = None if target in leaves or target in records else _fused_layer(target, leaves)
            if target in leaves or target in records:
                modules.append(target)
            elif fused:
                modules.append(fused)
                notes.append(f"{target} is part of the fused {fused} in this model: the LoRA on {fused} covers all of it")
            elif not expert_param:
                missing.append(target)
        if missing:
            raise UsageError(f"--target-modules {','.join(missing)} matches no layer of this model",
                             "its linear layers are: " + ", ".join(sorted(leaves)) + " (or pass all-linear)")
        modules = sorted(set(modules))
    parameters = _expert_parameters(requested, experts, expert_modules, wanted_params, notes)
    if not modules and not parameters:
        raise UsageError(f"--target-modules {','.join(requested)} leaves nothing to train", "name linear layers or pass all-linear")
    return Targets(modules, parameters, notes)


def _expert_parameters(requested, experts: str, expert_modules: dict, wanted: set[str], notes: list[str]) -> list[str]:
    if not expert_modules:
        if experts == "target":
            raise UsageError("--experts target, but this model has no mixture-of-experts layers", "leave --experts out")
        return []
    available = sorted({param for record in expert_modules.values() for param in record["params"]})
    suffixes = sorted({_LAYER_PREFIX.sub("", name) for name in expert_modules})
    wanted_names = [f"{suffix}.{param}" for suffix in suffixes for param in available if param in wanted]
    if not wanted_names:
        if experts == "target":
            raise UsageError("--experts target, but --target-modules names no expert projection",
                             "add gate_proj,up_proj,down_proj or pass all-linear")
        notes.append(f"the experts of {len(expert_modules)} mixture-of-experts layers are not targeted")
        return []
    if experts == "auto":
        raise UsageError(
            f"--target-modules {','.join(requested)} would leave the routed experts of {len(expert_modules)} mixture-of-experts layers "
            f"without adapters ({', '.join(wanted_names)} are fused expert weights, not linear layers)",
            "pass --experts target to train them too, or --experts skip to leave them out",
        )
    if experts == "skip":
        notes.append(f"experts skipped (--experts skip): {', '.join(wanted_names)} of {len(expert_modules)} layers get no adapter")
        return []
    return wanted_names


def audit(peft_model) -> dict:
    """What PEFT really wrapped: ``{"modules": {leaf: count}, "experts": {param: [layers, experts]},
    "trainable": n, "total": n}``, counted on the model about to train."""
    modules: Counter = Counter()
    experts: dict[str, list[int]] = {}
    for name, module in peft_model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or not hasattr(lora_a, "keys") or not len(lora_a):
            continue
        if type(module).__name__ == "ParamWrapper":
            layers_experts = experts.setdefault(module.parameter_name, [0, int(module.num_experts)])
            layers_experts[0] += 1
        else:
            modules[_leaf(name)] += 1
    trainable = sum(param.numel() for param in peft_model.parameters() if param.requires_grad)
    total = sum(param.numel() for param in peft_model.parameters())
    return {"modules": dict(sorted(modules.items())), "experts": dict(sorted(experts.items())), "trainable": trainable, "total": total}


def audit_lines(record: dict, targets: Targets) -> list[str]:
    """The lines ``train`` prints before its first step."""
    layers = sum(record["modules"].values())
    parts = [f"LoRA on {layers} layers (" + ", ".join(f"{leaf} x{count}" for leaf, count in record["modules"].items()) + ")"]
    routed = {param: value for param, value in record["experts"].items() if value[1] > 1}
    routers = {param: value for param, value in record["experts"].items() if value[1] <= 1}
    if routed:
        experts = max(count for _, count in routed.values())
        parts.append(f"the experts of {max(n for n, _ in routed.values())} layers ({', '.join(routed)}; {experts} experts each)")
    if routers:
        parts.append(", ".join(f"{param} x{layers_}" for param, (layers_, _) in routers.items()))
    share = 100.0 * record["trainable"] / max(1, record["total"])
    lines = [" and ".join(parts) + f": {record['trainable']:,} trainable parameters ({share:.2f} % of {record['total']:,})"]
    return lines + [f"Note: {note}" for note in targets.notes]
