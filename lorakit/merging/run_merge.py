"""``lorakit merge MODEL --lora ...``: check everything cheap first, then merge, write, verify, rename.

Order matters for the user: bad arguments, a quantized base, an adapter for another base and an
existing output all fail in about a second, before any weight is read, and leave nothing on disk.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.merging.lora_weights import LoadedLora, load_lora
from lorakit.merging.outputs import check_output, refuse_overwriting_inputs
from lorakit.merging.quantized import quantization_config, refuse
from lorakit.output.console import info, warn
from lorakit.store.adapters import read_adapter
from lorakit.store.atomic import atomic_folder
from lorakit.hub.resolve import resolve_lora
from lorakit.store.lora_spec import LoraSpec, display_name, refuse_repeats

DTYPE_NAMES = {"auto": None, "fp32": "F32", "bf16": "BF16", "fp16": "F16"}
MERGE_RECORD = "lorakit_merge.json"


@dataclass
class MergeRequest:
    model: str | None
    loras: list[LoraSpec]
    output: Path
    fmt: str = "hf"
    dtype: str = "auto"
    max_shard_size: str = "5GB"
    dequantize: bool = False
    force: bool = False
    verify: bool = True
    cpu: bool = False
    allow_pickle: bool = False
    trust_remote_code: bool = False
    report: dict = field(default_factory=dict)


def peak_rss_mb() -> float:
    """This process's own peak resident memory so far, in MB.

    Linux: ``VmHWM``. ``ru_maxrss`` is not used there because a child started from a large parent
    inherits the parent's high-water mark at exec, so it would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def lora_paths(specs: list[LoraSpec], where: str = "--lora") -> list[Path]:
    """Every adapter folder found (cheap), the same folder twice refused as every command refuses it."""
    paths = [resolve_lora(spec.name) for spec in specs]
    refuse_repeats([(spec.name, path) for spec, path in zip(specs, paths)], where)
    return paths


def load_loras(specs: list[LoraSpec], model_path: Path | None, allow_pickle: bool, trust_remote_code: bool = False,
               where: str = "--lora") -> list[LoadedLora]:
    """Resolve, check against the base (when given) and load every LoRA; names made unique."""
    from lorakit.merging.checkpoint import safetensors_shapes
    from lorakit.store.preflight import check_adapter_fits, read_model_config

    tensor_shapes = safetensors_shapes(model_path) if model_path is not None else None
    model_config = read_model_config(model_path) if model_path is not None else None
    loaded, used = [], set()
    for spec, path in zip(specs, lora_paths(specs, where)):
        adapter = read_adapter(path, allow_pickle=allow_pickle)
        if model_path is not None:
            for message in check_adapter_fits(adapter, model_path, trust_remote_code, tensor_shapes):
                warn(message)
        name, suffix = display_name(spec, path), 2
        while name in used:
            name, suffix = f"{display_name(spec, path)}-{suffix}", suffix + 1
        used.add(name)
        loaded.append(load_lora(adapter, name, spec.weight, model_config))
    return loaded


def run_merge(request: MergeRequest) -> dict:
    from lorakit.output.quiet import quiet_libraries, quiet_logs
    from lorakit.hub.resolve import resolve_model
    from lorakit.store.preflight import read_model_config

    quiet_logs()
    if request.verify or request.fmt != "hf" or request.dequantize:
        quiet_libraries()  # these import transformers; a plain --no-verify merge never does (torch and safetensors only)
    started = time.perf_counter()
    output = check_output(request.output, request.force, folder=request.fmt != "gguf-lora")
    model_path = resolve_model(request.model)
    config = read_model_config(model_path)
    label = f"'{request.model or model_path.name}'"
    quant = quantization_config(config)
    if quant and request.fmt != "gguf-lora" and not request.dequantize:
        raise refuse(label, quant)
    if request.dequantize and not quant:
        warn(f"{label} is not quantized; --dequantize changes nothing")
    if request.fmt == "state_dict":
        from lorakit.merging.meta_export import check_llama

        check_llama(config, label)
    if request.fmt == "gguf-lora":
        from lorakit.merging.gguf_lora import gguf_family

        gguf_family(config, label)  # an architecture llama.cpp cannot take fails before any adapter is read
    refuse_overwriting_inputs(output, [model_path] + lora_paths(request.loras))  # before any tensor is read
    loras = load_loras(request.loras, model_path, request.allow_pickle, request.trust_remote_code)
    report = {"model": str(model_path), "output": str(output), "format": request.fmt,
              "loras": [{"name": lora.name, "path": str(lora.path), "weight": lora.weight} for lora in loras]}
    if request.fmt == "gguf-lora":
        from lorakit.merging.run_exports import export_gguf_lora

        report.update(export_gguf_lora(request, loras, config, label, output))
    else:
        report.update(_merge_into_base(request, loras, model_path, config, quant, output))
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return report


def _out_dtype(request: MergeRequest, config: dict, dequantizing: bool) -> str | None:
    wanted = DTYPE_NAMES[request.dtype]
    if wanted is None and dequantizing:  # --dequantize promises a 16-bit copy
        wanted = "F16" if str(config.get("dtype") or config.get("torch_dtype")) == "float16" else "BF16"
    return wanted


def _merge_into_base(request, loras, model_path, config, quant, output) -> dict:
    from lorakit.loaders.devices import pick_device
    from lorakit.merging.checkpoint import open_checkpoint
    from lorakit.merging.plan import build_plan

    device = pick_device(request.cpu)
    source = open_checkpoint(model_path, request.allow_pickle)
    dequantizing = bool(quant and request.dequantize)
    if dequantizing:
        from lorakit.merging.quantized import dequantized_source

        info("Dequantizing the base to 16 bits before merging...")
        source = dequantized_source(model_path, quant, source, request.trust_remote_code)
    out_dtype = _out_dtype(request, config, dequantizing)
    plan = build_plan(source, loras, model_path, out_dtype, request.trust_remote_code)
    adapter_mb = sum(lora.info.weights_file.stat().st_size for lora in loras) / 1e6
    report = {"device": device, "updated_tensors": len(plan.updated()), "untied_embeddings": plan.untied,
              "largest_input_shard_mb": round(source.largest_file_bytes() / 1e6, 1), "adapters_mb": round(adapter_mb, 1)}
    info(f"Merging {len(loras)} LoRA(s) into {len(plan.updated())} of {len(plan.tensors)} tensors of {model_path.name} ({request.fmt}, {device})...")
    with atomic_folder(output, replace=request.force) as tmp:
        if request.fmt == "state_dict":
            from lorakit.merging.run_exports import write_state_dict

            report.update(write_state_dict(plan, source, tmp, model_path, config, device))
        else:
            report.update(_write_hf(request, plan, source, tmp, model_path, out_dtype, dequantizing, device))
        report["peak_rss_merge_mb"] = round(peak_rss_mb(), 1)
        if request.verify:
            report["verification"] = _verify(request, loras, model_path, plan, tmp, device, source if dequantizing else None)
        (tmp / MERGE_RECORD).write_text(json.dumps({key: value for key, value in report.items() if key != "output"}, indent=2) + "\n")
    return report


def _write_hf(request, plan, source, tmp, model_path, out_dtype, dequantizing, device) -> dict:
    from lorakit.merging.hf_writer import parse_size, write_hf_weights
    from lorakit.merging.support_files import copy_support_files, rewrite_config

    written = write_hf_weights(plan, source, tmp, parse_size(request.max_shard_size), device, progress=info)
    copied = copy_support_files(model_path, tmp)
    rewrite_config(tmp, out_dtype, plan.untied, dequantizing)
    return {"shards": written.files, "output_mb": round(written.total_bytes / 1e6, 1), "copied_files": copied}


def _verify(request, loras, model_path, plan, tmp, device, dequantized_source=None) -> dict:
    from lorakit.merging.verify import load_hf_folder, model_from_source, verify

    info("Verifying: logits of the merged model vs the base with the LoRAs unmerged...")
    if request.fmt == "state_dict":
        from lorakit.merging.run_exports import load_state_dict_model
        from lorakit.store.preflight import read_model_config

        load = load_state_dict_model(tmp, model_path, read_model_config(model_path), plan.untied, request.trust_remote_code)
    else:
        load = load_hf_folder(tmp, request.trust_remote_code)
    load_base = None
    label = "base + LoRAs attached at runtime"
    if dequantized_source is not None:
        load_base = model_from_source(model_path, dequantized_source, request.trust_remote_code)
        label = "dequantized base + LoRAs attached at runtime"
    result = verify(model_path, [(lora.path, lora.weight) for lora in loras], load, _dominant_dtype(plan), device,
                    request.trust_remote_code, request.allow_pickle, label, load_base)
    if not result.within_tolerance:
        warn(f"the merged model differs from base + LoRAs more than rounding explains (max {result.max_abs_logit_diff:.3g} > {result.tolerance:g}); "
             "DoRA adapters merged together, or a modules_to_save copy with a weight other than 1, can cause this")
    info(f"Verified: {result.describe()}")
    return result.to_dict()


def _dominant_dtype(plan) -> str:
    updated = plan.updated() or plan.tensors
    return max({tensor.dtype for tensor in updated}, key=lambda name: {"F32": 0, "F64": 0, "F16": 1, "BF16": 2}.get(name, 0))
