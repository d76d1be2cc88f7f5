"""Load the base through the loader registry (capability-checked), resolve the precision, attach the LoRA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.errors import CapabilityError, LorakitError, UsageError
from lorakit.training.params import ALL_LINEAR, TrainParams


@dataclass
class Precision:
    name: str  # fp32 / bf16 / fp16 (resolved, never "auto")
    autocast_dtype: Any  # torch dtype or None
    load_dtype: str  # what the loader is asked for


def cpu_supports_bf16() -> bool:
    """Native bf16 matmuls (avx512_bf16 / AMX): only then is bf16 autocast faster than fp32 on a CPU."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older torch builds without the probe
        return False


def resolve_precision(requested: str, device: str) -> Precision:
    """``auto`` = bf16 autocast where the hardware runs bf16 natively, else fp16 on old GPUs, else fp32.

    The frozen base is loaded in the autocast dtype (half the memory, no per-step weight casts);
    the LoRA weights stay fp32 (PEFT upcasts adapters), so the optimizer updates full-precision
    weights.
    """
    import torch

    name = requested
    if name == "auto":
        if device.startswith("cuda"):
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device == "cpu" and cpu_supports_bf16():
            name = "bf16"
        else:
            name = "fp32"
    if name == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise UsageError("--precision bf16 is not supported by this GPU", "use --precision fp16 or fp32")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    return Precision(name, dtype, name)


def train_loader(params: TrainParams, model_path: Path, cpu: bool, device: str):
    """``(loader, options, precision)``: the chosen loader, refused if it cannot train or load this way.

    Loads nothing, so ``train`` calls it before the dataset is tokenized.
    """
    from lorakit.loaders.options import LoadOptions
    from lorakit.loaders.registry import backends_that, choose_loader
    from lorakit.training.sharding import quant_storage_extra

    precision = resolve_precision(params.precision, device)
    options = LoadOptions(
        dtype=precision.load_dtype, load_in_8bit=params.load_in_8bit, load_in_4bit=params.load_in_4bit,
        cpu=cpu, purpose="train", extra=quant_storage_extra(params.shard, params.load_in_4bit, precision.load_dtype),
    )
    loader = choose_loader(model_path, options, requested=None if params.loader in ("", "auto") else params.loader)
    if not loader.capabilities.train:
        raise CapabilityError(f"loader '{loader.name}' cannot train LoRAs", backends_that(lambda c: c.train, "train"))
    return loader, options, precision


def load_base(params: TrainParams, model_path: Path, cpu: bool, device: str, check_weights: bool = True):
    """A Session from the chosen loader, refusing loaders that cannot train; ``device`` is the job's.

    ``check_weights=False`` leaves the NaN/Inf check to the caller (a sharded run checks each rank's
    shards instead, so no rank ever reads the whole base).
    """
    loader, options, precision = train_loader(params, model_path, cpu, device)
    session = loader.load(model_path, options)
    if check_weights:
        refuse_nonfinite_weights(session.model)
    return session, precision


def refuse_nonfinite_weights(model) -> None:
    """A base holding NaN or Inf makes the loss NaN at the first step, which reads like a learning-rate
    problem; name the broken weight instead, before training starts (one pass over the weights, small
    next to loading them; quantized integer weights are skipped)."""
    name = first_nonfinite_weight(model)
    if name is not None:
        raise nonfinite_error(name)


def nonfinite_error(name: str) -> LorakitError:
    return LorakitError(
        f"the base model's weight {name} holds NaN or Inf values, so training would produce a NaN loss from the first step",
        "the model files are damaged: download or convert the model again",
    )


def first_nonfinite_weight(model) -> str | None:
    """The name of the first weight holding NaN or Inf (of this rank's shard for a sharded base), or None."""
    from lorakit.store.adapter_checks import all_finite

    for name, param in model.named_parameters():
        tensor = param.detach()
        if hasattr(tensor, "to_local"):  # an FSDP-sharded weight: this rank's part
            tensor = tensor.to_local()
        if not all_finite(tensor):
            return name
    return None


def refuse_nonfinite_shards(peft_model, ctx) -> None:
    """The NaN/Inf check of a sharded base (training/sharding.py): each rank checks its own shards, every
    rank gets the same answer."""
    import torch.distributed as dist

    found: list = [None] * ctx.world_size
    dist.all_gather_object(found, first_nonfinite_weight(peft_model))
    bad = next((name for name in found if name is not None), None)
    if bad is not None:
        raise nonfinite_error(bad.removeprefix("base_model.model."))


def check_target_modules(params: TrainParams, model_path: Path) -> None:
    """Name a wrong --target-modules/--experts before any weight loads (modules from the meta device)."""
    from lorakit.store.preflight import base_module_shapes
    from lorakit.training.targets import resolve_targets

    targets = resolve_targets(params.target_modules, params.experts, base_module_shapes(model_path))
    _check_expert_settings(params, targets)


def _check_expert_settings(params: TrainParams, targets) -> None:
    if targets.parameters and params.dropout:
        raise UsageError(f"--experts target needs --dropout 0 (got {params.dropout:g}): PEFT cannot apply dropout inside fused expert weights",
                         "pass --dropout 0")
    if targets.parameters and params.use_dora:
        raise UsageError("--experts target cannot be combined with --use-dora: PEFT has no DoRA for fused expert weights")


def linear_layer_names(model) -> tuple[list[str], bool]:
    """Leaf names of the layers a LoRA can wrap (not the output head), and whether some are quantized
    kernels that are not ``nn.Linear`` (GPTQ engines' QuantLinear), which PEFT's ``all-linear`` skips."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names, kernels = set(), False
    for name, module in model.named_modules():
        if module is head or not name:
            continue
        is_kernel = hasattr(module, "qweight") and not isinstance(module, torch.nn.Linear)
        if isinstance(module, torch.nn.Linear) or is_kernel:
            names.add(name.rsplit(".", 1)[-1])
            kernels = kernels or is_kernel
    return sorted(names), kernels


def model_targets(params: TrainParams, model):
    """The resolved targets on the loaded model (``training/targets.py``): explicit layer names, never
    PEFT's ``all-linear``, and the experts' fused weights when ``--experts target``."""
    from lorakit.store.preflight import module_records
    from lorakit.training.targets import resolve_targets

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_name = next((name for name, module in model.named_modules() if module is head), None) if head is not None else None
    records = module_records(model)
    for name, module in model.named_modules():  # quantized kernels that are not nn.Linear (GPTQ QuantLinear) are layers too
        if name and name not in records and hasattr(module, "qweight"):
            records[name] = {"kind": type(module).__name__, "linear": True}
    targets = resolve_targets(params.target_modules, params.experts, records, head_name)
    _check_expert_settings(params, targets)
    return targets


def lora_config(params: TrainParams, model=None, targets=None):
    from peft import LoraConfig

    init = str(params.init_lora_weights).lower()
    init_value: Any = {"default": True, "false": False}.get(init, init)
    if targets is None and model is not None:
        targets = model_targets(params, model)
    modules: Any = targets.modules if targets is not None else ("all-linear" if params.target_modules == [ALL_LINEAR] else list(params.target_modules))
    return LoraConfig(
        r=params.rank, lora_alpha=params.alpha, lora_dropout=params.dropout, target_modules=modules,
        target_parameters=(targets.parameters or None) if targets is not None else None,
        bias="none", task_type="CAUSAL_LM", use_rslora=params.use_rslora, use_dora=params.use_dora,
        init_lora_weights=init_value,
    )


def attach_lora(model, params: TrainParams):
    """A trainable PEFT model; the LoRA init is seeded so runs with the same seed start alike."""
    import torch
    from peft import get_peft_model

    model.config.use_cache = False  # a KV cache disables packed-sequence masks (see training/batching.py)
    torch.manual_seed(params.seed)
    targets = model_targets(params, model)
    try:
        peft_model = get_peft_model(model, lora_config(params, model, targets))
    except ValueError as error:
        text = str(error)
        if "not found in the base model" in text or "Target modules" in text:
            names = linear_layer_names(model)[0]
            raise UsageError(
                f"--target-modules {','.join(params.target_modules)} matches no layer of this model",
                "its linear layers are: " + ", ".join(names) + " (or pass all-linear)",
            ) from None
        raise
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    if not trainable:
        raise UsageError("the LoRA has no trainable parameter", "check --target-modules")
    from lorakit.training.fast_dropout import use_fast_dropout

    use_fast_dropout(peft_model)
    from lorakit.output.console import info
    from lorakit.training.targets import audit, audit_lines

    for line in audit_lines(audit(peft_model), targets):
        info(line)
    return peft_model
