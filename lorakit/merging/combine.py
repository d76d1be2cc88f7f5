"""Combine several LoRAs into one new adapter (``merge --adapters-only``), the way PEFT's ``add_weighted_adapter`` does.

The per-module arithmetic follows PEFT 0.21 step by step, and the merging kernels themselves
(``task_arithmetic``, ``ties``, ``dare_linear``, ``dare_ties``, ``magnitude_prune``) are PEFT's own,
but no base model is loaded: only the adapters' tensors are read, so the memory is the adapters'.

- ``cat``: exact. A = [w_i s_i A_i], B = [B_i]; rank = sum of ranks (different ranks allowed).
- ``svd`` (and ``ties_svd``, ``dare_linear_svd``, ``dare_ties_svd``, ``magnitude_prune_svd``): combine the
  full updates s_i B_i A_i with the weights, then keep the top singular values (rank ``--svd-rank``,
  default the largest input rank). Computed in fp32.
- ``linear``, ``ties``, ``dare_linear``, ``dare_ties``, ``magnitude_prune``: combine the A matrices and the B
  matrices separately with weights sqrt(|w_i s_i|) (the sign on A); all ranks must be equal. ``linear``
  is a rough approximation of the summed update (cross terms appear); use ``cat`` when exactness matters.

The new adapter has lora_alpha = r, so its scaling is 1 and every scale lives in its tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lorakit.errors import AdapterError, UsageError
from lorakit.merging.lora_weights import LoadedLora, ModuleLora

FACTOR_METHODS = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
SVD_METHODS = ("svd", "ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")
METHODS = ("cat",) + FACTOR_METHODS + SVD_METHODS
PRUNING = ("ties", "dare_linear", "dare_ties", "magnitude_prune", "ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")


@dataclass
class CombineOptions:
    method: str = "cat"
    density: float | None = None
    majority_sign: str = "total"
    svd_rank: int | None = None
    svd_clamp: float | None = None
    seed: int = 0


def adapter_rank(lora: LoadedLora) -> int:
    """PEFT's rank for an adapter: ``r``, or the largest ``rank_pattern`` value."""
    config = lora.info.config
    ranks = [int(config.get("r", 0))] + [int(value) for value in (config.get("rank_pattern") or {}).values()]
    ranks += [record.rank for record in lora.modules.values()]
    return max(ranks)


def check_inputs(loras: list[LoadedLora], options: CombineOptions) -> None:
    if options.method not in METHODS:
        raise UsageError(f"unknown --method '{options.method}'", "choose one of: " + ", ".join(METHODS))
    for lora in loras:
        label = f"adapter '{lora.path.name}'"
        if lora.uses_dora:
            raise AdapterError(f"{label} uses DoRA; DoRA adapters cannot be combined (their magnitude vectors do not add)", "merge it into the model instead")
        if any(record.bias is not None for record in lora.modules.values()):
            raise AdapterError(f"{label} has LoRA biases, which cannot be combined")
    if len({bool(lora.info.config.get("fan_in_fan_out")) for lora in loras}) > 1:
        raise AdapterError("the adapters disagree on fan_in_fan_out, so they were made for different kinds of layers")
    signatures = {str(sorted((lora.info.base_signature or {}).items())) for lora in loras if lora.info.base_signature}
    if len(signatures) > 1:
        raise AdapterError("these adapters were made for different base models (their lorakit_base.json differ)", "combine adapters of one base")
    first: dict[str, tuple[LoadedLora, ModuleLora]] = {}
    for lora in loras:
        for module, record in lora.modules.items():
            if module not in first:
                first[module] = (lora, record)
                continue
            other_lora, other = first[module]
            if (record.kind, record.A.shape[1], record.B.shape[0]) != (other.kind, other.A.shape[1], other.B.shape[0]):
                raise AdapterError(
                    f"adapters '{other_lora.path.name}' and '{lora.path.name}' do not fit the same base: {module} is "
                    f"{other.kind} {other.B.shape[0]}x{other.A.shape[1]} in one and {record.kind} {record.B.shape[0]}x{record.A.shape[1]} in the other"
                )
    method = "linear" if len(loras) == 1 else options.method
    if method in FACTOR_METHODS and len({adapter_rank(lora) for lora in loras}) != 1:
        ranks = ", ".join(f"{lora.name} r={adapter_rank(lora)}" for lora in loras)
        raise UsageError(f"--method {method} needs adapters of equal rank ({ranks})", "use --method cat (exact) or svd for different ranks")
    if method in PRUNING and options.density is not None and not 0.0 < options.density <= 1.0:
        raise UsageError(f"--density must be in (0, 1], got {options.density}")


def _kernel(method: str, tensors: list, weights, options: CombineOptions):
    from peft.utils import merge_utils

    base = method.removesuffix("_svd")
    if base in ("svd", "linear"):
        return merge_utils.task_arithmetic(tensors, weights)
    density = 0.5 if options.density is None else options.density
    if base in ("ties", "dare_ties"):
        return getattr(merge_utils, base)(tensors, weights, density, options.majority_sign)
    return getattr(merge_utils, base)(tensors, weights, density)


def _pad(A, B, rank: int):
    import torch

    if A.shape[0] < rank:
        A = torch.cat([A, A.new_zeros(rank - A.shape[0], A.shape[1])], dim=0)
        B = torch.cat([B, B.new_zeros(B.shape[0], rank - B.shape[1])], dim=1)
    return A, B


def combine_module(parts: list[tuple[LoadedLora, ModuleLora]], method: str, new_rank: int, options: CombineOptions):
    """``(A, B)`` of the combined module, in fp32, padded to ``new_rank``."""
    import torch

    if method == "cat":
        A = torch.cat([record.A.float() * (lora.weight * record.scaling) for lora, record in parts], dim=0)
        B = torch.cat([record.B.float() for _, record in parts], dim=1)
        return _pad(A, B, new_rank)
    if method in FACTOR_METHODS:
        weights_A, weights_B = [], []
        for lora, record in parts:
            scaled = lora.weight * record.scaling
            weights_A.append(math.sqrt(abs(scaled)) * (1 if scaled >= 0 else -1))  # the sign on one side only
            weights_B.append(math.sqrt(abs(scaled)))
        A = _kernel(method, [record.A.float() for _, record in parts], torch.tensor(weights_A), options)
        B = _kernel(method, [record.B.float() for _, record in parts], torch.tensor(weights_B), options)
        return _pad(A, B, new_rank)
    deltas = [(record.B.float() @ record.A.float()) * record.scaling for _, record in parts]
    delta = _kernel(method, deltas, torch.tensor([lora.weight for lora, _ in parts]), options)
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    U, S, Vh = U[:, :new_rank], S[:new_rank], Vh[:new_rank, :]
    U = U @ torch.diag(S)
    if options.svd_clamp is not None:
        high = torch.quantile(torch.cat([U.flatten(), Vh.flatten()]), options.svd_clamp)
        U, Vh = U.clamp(-high, high), Vh.clamp(-high, high)
    return _pad(Vh, U, new_rank)


def combine(loras: list[LoadedLora], options: CombineOptions) -> tuple[dict, dict]:
    """``(state_dict in PEFT's key format, adapter_config)`` of the combined adapter."""
    import torch

    check_inputs(loras, options)
    method = "linear" if len(loras) == 1 else options.method
    ranks = [adapter_rank(lora) for lora in loras]
    new_rank = ranks[0] if method in FACTOR_METHODS else sum(ranks) if method == "cat" else (options.svd_rank or max(ranks))
    torch.manual_seed(options.seed)  # DARE prunes at random
    modules: dict[str, list] = {}
    for lora in loras:
        for module, record in lora.modules.items():
            modules.setdefault(module, []).append((lora, record))
    out_dtype = next(iter(loras[0].modules.values())).A.dtype
    state: dict = {}
    for module, parts in modules.items():
        A, B = combine_module(parts, method, new_rank, options)
        embedding = parts[0][1].kind == "embedding"
        key_A, key_B = ("lora_embedding_A", "lora_embedding_B") if embedding else ("lora_A.weight", "lora_B.weight")
        state[f"base_model.model.{module}.{key_A}"] = A.to(out_dtype).contiguous()
        state[f"base_model.model.{module}.{key_B}"] = B.to(out_dtype).contiguous()
    replaced: dict[str, str] = {}
    for lora in loras:
        for module, tensors in lora.replacements.items():
            if module in replaced:
                raise AdapterError(f"adapters '{replaced[module]}' and '{lora.path.name}' both replace {module} (modules_to_save); they cannot be combined")
            replaced[module] = lora.path.name
            for leaf, tensor in tensors.items():
                state[f"base_model.model.{module}.{leaf}"] = tensor.contiguous()
    return state, _config(loras, new_rank, sorted(replaced))


def _config(loras: list[LoadedLora], rank: int, modules_to_save: list[str]) -> dict:
    config = dict(loras[0].info.config)
    targets = [lora.info.config.get("target_modules") for lora in loras]
    if all(isinstance(target, str) for target in targets):
        config["target_modules"] = "|".join(f"({target})" for target in targets)
    else:
        names: set[str] = set()
        for target in targets:
            names.update([target] if isinstance(target, str) else (target or []))
        config["target_modules"] = sorted(names)
    config.update(
        r=rank, lora_alpha=rank, rank_pattern={}, alpha_pattern={}, use_rslora=False, use_dora=False,
        modules_to_save=modules_to_save or None, inference_mode=True,
    )
    return config


def provenance(loras: list[LoadedLora], options: CombineOptions, method: str) -> dict:
    """What went into a combined adapter (written beside it as ``lorakit_combination.json``)."""
    return {
        "method": method, "density": options.density, "majority_sign": options.majority_sign, "svd_rank": options.svd_rank,
        "seed": options.seed, "adapters": [{"name": lora.name, "path": str(lora.path), "weight": lora.weight} for lora in loras],
    }
