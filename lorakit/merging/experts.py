"""LoRAs on mixture-of-experts weights (PEFT ``target_parameters``), split into one LoRA per expert tensor.

PEFT's ``ParamWrapper`` holds one LoRA for a whole 3-D expert parameter: ``lora_A`` [r*E, in] whose
rows are grouped by expert (``reshape(E, r, in)``), and ``lora_B`` [out, r*E] whose columns are
interleaved (``reshape(out, r, E)``: expert ``e`` owns columns ``e, e+E, e+2E...``). Expert ``e``'s
update is therefore ``scaling * B[:, e::E] @ A[e*r:(e+1)*r]``, an ordinary LoRA on that expert's
[out, in] slice. Checkpoints store one tensor per expert (Mixtral ``w1``/``w3``/``w2``, Qwen-MoE
``gate_proj``/``up_proj``/``down_proj``); the fused ``gate_up_proj`` is gate rows then up rows, so the
split also cuts ``B`` by rows. After the split every expert is a plain :class:`ModuleLora` and the
streaming merge, its rounding (bit-identical to PEFT) and its verification apply unchanged.

Which parameter a wrapper holds is read from the shapes (gate_up is [2*ffn, hidden], down is
[hidden, ffn]; they can never be equal), not from PEFT's nesting order of ``.base_layer`` wrappers.
"""

from __future__ import annotations

from lorakit.errors import AdapterError
from lorakit.store.families import Family, describe, expert_count, family_of, param_wrapper_module


def _expert_sizes(config: dict) -> tuple[int, int]:
    hidden = int(config["hidden_size"])
    ffn = int(config.get("moe_intermediate_size") or config["intermediate_size"])
    return hidden, ffn


def _which_param(out_features: int, in_features: int, hidden: int, ffn: int, label: str, module: str) -> str:
    if (out_features, in_features) == (2 * ffn, hidden):
        return "gate_up_proj"
    if (out_features, in_features) == (hidden, ffn):
        return "down_proj"
    raise AdapterError(
        f"{label} has an expert LoRA on {module} of shape [{out_features}, {in_features}], which fits neither gate_up_proj "
        f"[{2 * ffn}, {hidden}] nor down_proj [{hidden}, {ffn}] of this base",
        "use the base model the adapter was trained on",
    )


def split_expert_lora(wrapper: str, A, B, config: dict, label: str) -> tuple[str, int, dict[str, tuple]]:
    """``(parameter key, rank, {checkpoint module name: (A_e, B_e)})`` for one ParamWrapper LoRA on the
    experts of one layer; the key (``...mlp.experts.gate_up_proj``) is what PEFT matches rank and
    alpha patterns against."""
    family = family_of(config)
    if family is None or family.experts is None:
        raise AdapterError(f"{label} targets expert parameters (target_parameters), but lorakit does not know the expert layout of {describe(config)}",
                           "merge it with PEFT's merge_and_unload instead")
    module = param_wrapper_module(wrapper)
    runtime = family.experts.runtime
    if not module.endswith(runtime):
        raise AdapterError(f"{label} targets {module}, which is not the experts module ({runtime}) of a {describe(config)}")
    experts = expert_count(family, config)
    if experts <= 0 or A.shape[0] % experts or B.shape[1] != A.shape[0]:
        raise AdapterError(f"{label}: the expert LoRA on {module} has A {list(A.shape)} and B {list(B.shape)}, which do not split into {experts} experts")
    hidden, ffn = _expert_sizes(config)
    param = _which_param(int(B.shape[0]), int(A.shape[1]), hidden, ffn, label, module)
    prefix = module[: -len(runtime)]
    leaves = family.experts.params[param]
    rank = A.shape[0] // experts
    split: dict[str, tuple] = {}
    for expert in range(experts):
        A_e = A[expert * rank:(expert + 1) * rank].contiguous()
        B_e = B[:, expert::experts]
        rows = B_e.shape[0] // len(leaves)
        for index, leaf in enumerate(leaves):
            name = f"{prefix}{family.experts.on_disk.format(e=expert)}.{leaf}"
            split[name] = (A_e, B_e[index * rows:(index + 1) * rows].contiguous())
    return f"{module}.{param}", int(rank), split


def family_has_experts(config: dict) -> Family | None:
    family = family_of(config)
    return family if family is not None and family.experts is not None else None
