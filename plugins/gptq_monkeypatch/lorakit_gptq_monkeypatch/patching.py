"""Build a model from a GPTQ checkpoint with :class:`GPTQLinear` layers, or patch one already loaded.

No quantization engine is needed: the model skeleton comes from ``transformers`` (parameters on the
meta device, so nothing full-size is ever allocated), every linear layer that has a ``qweight`` in
the checkpoint becomes a :class:`GPTQLinear`, and the checkpoint's tensors are assigned in place.
"""

from __future__ import annotations

import json
from pathlib import Path

from lorakit.api import CapabilityError, GPTQSettings, ModelNotFound, read_gptq_settings

QUANT_PARTS = ("qweight", "qzeros", "scales", "g_idx")


def weight_files(model_path: Path) -> list[Path]:
    model_path = Path(model_path)
    index = model_path / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_path / name for name in names]
    files = sorted(model_path.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in model_path.glob("*.bin")) + sorted(p.name for p in model_path.glob("*.pt"))
        hint = f"it has only pickle files ({', '.join(pickles)}); convert them to safetensors" if pickles else "the checkpoint is incomplete"
        raise ModelNotFound(f"'{model_path}' has no .safetensors weights", hint)
    return files


def check_settings(settings: GPTQSettings) -> None:
    from lorakit_gptq_monkeypatch.layer import SUPPORTED_BITS

    if settings.bits not in SUPPORTED_BITS:
        raise CapabilityError(
            f"the GPTQ monkey patch handles {'/'.join(map(str, SUPPORTED_BITS))}-bit checkpoints, this one is {settings.bits}-bit",
            "use --loader autogptq (GPTQModel) for it",
        )
    if settings.checkpoint_format not in ("gptq", "gptq_v2"):
        raise CapabilityError(f"unknown GPTQ checkpoint_format '{settings.checkpoint_format}'", "expected gptq or gptq_v2")


def make_layer(linear, settings: GPTQSettings, has_bias: bool, dtype):
    from lorakit_gptq_monkeypatch.layer import GPTQLinear

    return GPTQLinear(
        linear.in_features, linear.out_features, bias=has_bias, bits=settings.bits, group_size=settings.group_size,
        zero_offset=settings.zero_offset, dtype=dtype, device="cpu",
    )


def load_quantized_model(model_path: Path, dtype, device: str, trust_remote_code: bool = False):
    """A causal LM whose GPTQ layers are :class:`GPTQLinear`, on ``device`` in ``dtype``."""
    import torch
    from accelerate import init_empty_weights
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    settings = read_gptq_settings(model_path)
    check_settings(settings)
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # we build the layers ourselves; transformers must not call an engine
    with init_empty_weights():  # parameters on meta, buffers (rotary tables) real
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)

    files = weight_files(model_path)
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensor = handle.get_tensor(key)
                state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    quantized = sorted(key[: -len(".qweight")] for key in state if key.endswith(".qweight"))
    if not quantized:
        raise ModelNotFound(f"'{model_path}' says it is GPTQ ({settings.source}) but its weights hold no qweight tensor")
    for name in quantized:
        linear = model.get_submodule(name)
        if not isinstance(linear, torch.nn.Linear):
            raise CapabilityError(f"'{name}' is quantized in the checkpoint but is a {type(linear).__name__} in the model, not a Linear")
        model.set_submodule(name, make_layer(linear, settings, f"{name}.bias" in state, dtype))

    model.load_state_dict(state, strict=False, assign=True)  # extra tensors (old rotary tables) are ignored
    if getattr(config.get_text_config(), "tie_word_embeddings", False) and model.get_output_embeddings() is not None:
        model.get_output_embeddings().weight = model.get_input_embeddings().weight
    still_meta = [name for name, tensor in list(model.named_parameters()) + list(model.named_buffers()) if tensor.is_meta]
    if still_meta:
        raise ModelNotFound(
            f"'{model_path}' lacks weights for {len(still_meta)} tensors (first: {still_meta[0]})",
            "the checkpoint is incomplete or for another architecture",
        )
    model.to(device)
    model.eval()
    if (Path(model_path) / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(model_path)
    return model, settings


def is_engine_quant_layer(module) -> bool:
    """A GPTQ quantized linear made by an engine (GPTQModel, AutoGPTQ, optimum), found by its buffers."""
    from lorakit_gptq_monkeypatch.layer import GPTQLinear

    return not isinstance(module, GPTQLinear) and all(hasattr(module, part) for part in QUANT_PARTS) and hasattr(module, "in_features")


def patch_engine_layers(model, model_path: Path, dtype=None) -> int:
    """Replace engine GPTQ layers in ``model`` by :class:`GPTQLinear`, reading the packed tensors from disk.

    The tensors are read from the checkpoint rather than from the engine's modules: engines convert
    the zero points to their own internal format on load, the files are the documented format.
    Returns how many layers were replaced.
    """
    import torch
    from safetensors import safe_open

    targets = [name for name, module in model.named_modules() if is_engine_quant_layer(module)]
    if not targets:
        return 0
    settings = read_gptq_settings(model_path)
    check_settings(settings)
    wanted = {f"{name}.{part}" for name in targets for part in (*QUANT_PARTS, "bias")}
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(model_path):
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key in wanted:
                    state[key] = handle.get_tensor(key)
    for name in targets:
        old = model.get_submodule(name)
        layer_dtype = dtype or old.scales.dtype
        device = old.qweight.device
        new = make_layer(old, settings, f"{name}.bias" in state, layer_dtype)
        parts = {part: state[f"{name}.{part}"] for part in QUANT_PARTS if f"{name}.{part}" in state}
        if f"{name}.bias" in state:
            parts["bias"] = state[f"{name}.bias"]
        parts["scales"] = parts["scales"].to(layer_dtype)
        new.load_state_dict(parts, strict=False, assign=True)
        model.set_submodule(name, new.to(device))
    return len(targets)
