"""The two non-HF outputs of ``lorakit merge``: Meta's LLaMA state_dict and a llama.cpp GGUF LoRA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.merging.merge_math import merge_tensor
from lorakit.merging.safetensors_io import torch_dtype
from lorakit.output.console import info

STATE_DICT_FILE = "consolidated.00.pth"
PARAMS_FILE = "params.json"


def write_state_dict(plan, source, folder: Path, model_path: Path, config: dict, device: str) -> dict:
    """Merge every tensor, rename it to Meta's key, undo the rotary permutation, save one ``.pth``.

    ``torch.save`` needs the whole dict, so this path holds the merged model in memory once.
    """
    import torch

    from lorakit.merging.meta_export import params_json, to_meta

    state = {}
    for tensor in plan.tensors:
        base = source.read(tensor.source)
        merged = merge_tensor(tensor, base, device, owned=source.fresh_reads) if tensor.updates else base
        key, value = to_meta(tensor.name, merged.to(dtype=torch_dtype(tensor.dtype)).cpu(), config)
        if key is not None:
            state[key] = value
        del base, merged
    if "output.weight" not in state and "tok_embeddings.weight" in state:
        state["output.weight"] = state["tok_embeddings.weight"]  # a tied head: Meta's layout stores it
    torch.save(state, folder / STATE_DICT_FILE)
    params = params_json(config)
    (folder / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n")
    if (Path(model_path) / "tokenizer.model").is_file():
        shutil.copyfile(Path(model_path) / "tokenizer.model", folder / "tokenizer.model")
    size = (folder / STATE_DICT_FILE).stat().st_size
    info(f"wrote {STATE_DICT_FILE} ({len(state)} tensors, {size / 1e6:.1f} MB) and {PARAMS_FILE}")
    return {"files": sorted(path.name for path in folder.iterdir()), "output_mb": round(size / 1e6, 1), "params": params}


def load_state_dict_model(folder: Path, model_path: Path, config: dict, untied: bool, trust_remote_code: bool = False):
    """A loader for verification: the Meta file read back, permuted back, in a fresh HF model (fp32)."""

    def load():
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from lorakit.merging.meta_export import from_meta

        hf_config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        if hasattr(hf_config, "quantization_config"):
            del hf_config.quantization_config
        if untied:
            hf_config.tie_word_embeddings = False
        state = from_meta(torch.load(folder / STATE_DICT_FILE, map_location="cpu", weights_only=True, mmap=True), config)
        model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32, trust_remote_code=trust_remote_code)
        result = model.load_state_dict({key: value.float() for key, value in state.items()}, strict=False)
        tied_head = [] if untied else [key for key in result.missing_keys if key == "lm_head.weight" and hf_config.tie_word_embeddings]
        missing = sorted(set(result.missing_keys) - set(tied_head))
        if missing or result.unexpected_keys:
            raise LorakitError(f"the written state_dict does not load back: missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]}")
        return model

    return load


def export_gguf_lora(request, loras, config: dict, label: str, output: Path) -> dict:
    from lorakit.merging.gguf_lora import check_exportable, read_gguf_deltas, write_gguf_lora
    from lorakit.store.atomic import atomic_file

    check_exportable(loras, config, label)
    half = request.dtype == "fp16"
    info(f"Writing {len(loras)} LoRA(s) as a llama.cpp GGUF adapter ({'F16' if half else 'F32'})...")
    with atomic_file(output, replace=request.force) as tmp:
        report = write_gguf_lora(tmp, loras, config, label, half=half)
        if request.verify:
            report["verification"] = _check_gguf(tmp, loras, config, read_gguf_deltas)
            info(f"Verified: the GGUF's updates match the adapters' to {report['verification']['max_abs_delta_diff']:.2e} "
                 f"(largest update value {report['verification']['max_abs_delta']:.3g})")
    report["output_mb"] = round(output.stat().st_size / 1e6, 2)
    return report


def _check_gguf(path: Path, loras, config: dict, read_deltas) -> dict:
    """Read the file back, undo the permutation and compare each module's update with the adapters'."""
    from lorakit.merging.gguf_lora import _gguf_name, name_map_for

    name_map = name_map_for(config)
    expected: dict = {}
    for lora in loras:
        for module, record in lora.modules.items():
            name = _gguf_name(name_map, module)
            delta = record.delta(lora.weight)
            expected[name] = expected[name] + delta if name in expected else delta
    got = read_deltas(path, config)
    if set(got) != set(expected):
        raise LorakitError(f"the GGUF file holds {sorted(got)[:3]}... but {sorted(expected)[:3]}... were expected")
    worst = max(float((got[name] - expected[name]).abs().max()) for name in expected)
    scale = max(float(expected[name].abs().max()) for name in expected)
    if worst > 1e-2 * max(scale, 1e-6):
        raise LorakitError(f"the GGUF file does not reproduce the adapters (max update difference {worst:.3g}); nothing was written")
    return {"max_abs_delta_diff": worst, "max_abs_delta": scale, "modules": len(expected)}
