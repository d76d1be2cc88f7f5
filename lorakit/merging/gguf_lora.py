"""Write LoRAs as a llama.cpp LoRA adapter GGUF (``llama-cli --lora FILE``), with the ``gguf`` package.

Format (llama.cpp ``convert_lora_to_gguf.py``): ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha``; tensors ``<gguf name>.lora_a`` (numpy [r, in]) and ``.lora_b`` ([out, r]).
llama.cpp scales each pair by ``alpha / r`` (r from the tensor), or by 1 when alpha is 0.

Which models: every family whose HF class llama.cpp's ``convert_hf_to_gguf.py`` registers and whose
tensors lorakit maps (``lorakit/store/families.py``): Llama, Mistral and Mixtral (converted as
``llama``), Qwen2, Qwen3, Qwen2-MoE, Qwen3-MoE, Gemma 2, Gemma 3 and Phi-3 (fused ``attn_qkv`` and
``ffn_up``, kept fused as llama.cpp keeps them). Other models are refused in one line.

Details that follow the converter: llama-type GGUFs (``LlamaModel.undo_permute``) store q/k rows in
Meta's interleaved rotary order, so ``lora_b`` of q and k gets the same row permutation as the base
there, and nowhere else; embedding LoRAs are transposed into a pair whose ``lora_b`` rows are indexed
by token; LoRAs on fused expert weights (PEFT ``target_parameters``) are refused, as the converter
takes only ``lora_A``/``lora_B`` of modules. One adapter at weight 1 keeps its A, B and alpha as they
are; several (or a weight, rsLoRA, alpha_pattern) are concatenated with each pair's scale folded into
``lora_b`` and alpha 0, which is exact.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.merging.lora_weights import LoadedLora, ModuleLora
from lorakit.merging.meta_export import permute, unpermute
from lorakit.store.adapters import module_path_candidates
from lorakit.store.families import FAMILIES, Family, describe, family_of

SUPPORTED = {architecture: family.llama_cpp for family in FAMILIES if family.llama_cpp for architecture in family.architectures}
"""HF architecture -> llama.cpp architecture (``gguf.MODEL_ARCH`` member) for ``--format gguf-lora``."""


def gguf_family(config: dict, label: str) -> Family:
    """The model's family if llama.cpp takes LoRAs for it, else one line naming why not."""
    family = family_of(config)
    if family is None or not family.llama_cpp:
        reason = family.no_gguf_reason if family else "lorakit maps llama.cpp tensor names for " + ", ".join(sorted(SUPPORTED))
        raise LorakitError(f"--format gguf-lora cannot export for {label}, a {describe(config)}: {reason}", "use --format hf to merge instead")
    return family


def _arch(config: dict, label: str) -> str:
    return gguf_family(config, label).llama_cpp


def name_map_for(config: dict, label: str = "the base"):
    import gguf

    return gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, _arch(config, label)), int(config["num_hidden_layers"]))


def _gguf_name(name_map, module: str) -> str:
    for candidate in module_path_candidates(module):
        found = name_map.get_name(f"{candidate}.weight", try_suffixes=(".weight",))
        if found:
            return found
    raise LorakitError(f"llama.cpp has no tensor for {module}", "use --format hf to merge instead")


def _rotary_heads(module: str, config: dict) -> int | None:
    """The head count of the rotary row permutation llama.cpp applies to this module, or ``None``."""
    family = family_of(config)
    if family is None or not family.rope_permute:
        return None
    heads = int(config["num_attention_heads"])
    if module.endswith("q_proj"):
        return heads
    if module.endswith("k_proj"):
        return int(config.get("num_key_value_heads") or heads)
    return None


def _pair(record: ModuleLora):
    """(A, B) as llama.cpp applies them: ``B @ A`` has the base tensor's torch shape."""
    A, B = record.A.float(), record.B.float()
    if record.kind == "embedding":  # delta is (B A)^T = A^T B^T, rows indexed by token
        return B.T.contiguous(), A.T.contiguous()
    return A, B


def check_exportable(loras: list[LoadedLora], config: dict, label: str) -> None:
    """Refuse, in one line, a base or an adapter that a llama.cpp LoRA GGUF cannot express."""
    gguf_family(config, label)
    for lora in loras:
        label = f"adapter '{lora.path.name}'"
        if lora.uses_dora:
            raise LorakitError(f"{label} uses DoRA, which llama.cpp LoRA adapters cannot express", "use --format hf to merge it instead")
        if lora.replacements:
            raise LorakitError(f"{label} replaces whole modules ({', '.join(sorted(lora.replacements))}), which a GGUF LoRA cannot hold", "use --format hf to merge it instead")
        if any(record.bias is not None for record in lora.modules.values()):
            raise LorakitError(f"{label} has LoRA biases, which llama.cpp LoRA adapters cannot hold", "use --format hf")
        if any(record.fan_in_fan_out for record in lora.modules.values()):
            raise LorakitError(f"{label} uses fan_in_fan_out (GPT-2 style Conv1D layers), which these families do not have")
        if lora.expert_wrappers:
            raise LorakitError(f"{label} changes the fused expert weights of {lora.expert_wrappers[0]} (target_parameters); "
                               "llama.cpp's LoRA format takes LoRAs on linear modules only", "use --format hf to merge it instead")
        if config.get("tie_word_embeddings") and any(m.removeprefix("model.").startswith("lm_head") for m in lora.modules):
            raise LorakitError(f"{label} changes lm_head, which this base ties to the embeddings; llama.cpp cannot apply it", "use --format hf")


def gguf_tensors(loras: list[LoadedLora], config: dict, label: str) -> tuple[dict[str, object], float, str]:
    """``({gguf tensor name: fp32 tensor}, alpha, arch)`` for the adapters, weights and scales applied."""
    import torch

    arch = _arch(config, label)
    check_exportable(loras, config, label)
    name_map = name_map_for(config, label)
    single = len(loras) == 1 and loras[0].weight == 1.0
    alphas = {round(record.scaling * record.rank, 6) for lora in loras for record in lora.modules.values()}
    keep_alpha = single and not loras[0].info.config.get("use_rslora") and len(alphas) == 1
    alpha = float(alphas.pop()) if keep_alpha else 0.0
    pairs: dict[str, tuple[list, list]] = {}
    for lora in loras:
        for module, record in lora.modules.items():
            A, B = _pair(record)
            if not keep_alpha:
                B = B * (lora.weight * record.scaling)
            heads = _rotary_heads(module, config)
            if heads:
                B = unpermute(B, heads)  # HF row order -> llama.cpp's (Meta's) interleaved order
            As, Bs = pairs.setdefault(_gguf_name(name_map, module), ([], []))
            As.append(A)
            Bs.append(B)
    tensors = {}
    for name, (As, Bs) in sorted(pairs.items()):
        tensors[f"{name}.lora_a"] = torch.cat(As, dim=0)
        tensors[f"{name}.lora_b"] = torch.cat(Bs, dim=1)
    return tensors, alpha, arch


def write_gguf_lora(path: Path, loras: list[LoadedLora], config: dict, label: str, half: bool = False) -> dict:
    import gguf
    import numpy as np

    tensors, alpha, arch = gguf_tensors(loras, config, label)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, arch)])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(" + ".join(lora.name for lora in loras))
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor.numpy().astype(np.float16 if half else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"tensors": len(tensors), "alpha": alpha, "architecture": gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, arch)]}


def read_gguf_deltas(path: Path, config: dict) -> dict[str, object]:
    """``{gguf base tensor name: delta in HF row order}`` as llama.cpp would apply it (scale 1)."""
    import gguf
    import torch

    reader = gguf.GGUFReader(str(path))
    field = reader.fields[gguf.Keys.Adapter.LORA_ALPHA]
    alpha = float(field.parts[field.data[0]][0])
    arrays = {tensor.name: torch.from_numpy(np_array_2d(tensor)).float() for tensor in reader.tensors}
    deltas = {}
    for name in arrays:
        if not name.endswith(".lora_a"):
            continue
        base = name.removesuffix(".lora_a")
        A, B = arrays[name], arrays[f"{base}.lora_b"]
        scale = alpha / B.shape[1] if alpha else 1.0
        permuted = (family_of(config) or FAMILIES[0]).rope_permute
        if permuted and base.endswith("attn_q.weight"):
            B = permute(B, int(config["num_attention_heads"]))
        elif permuted and base.endswith("attn_k.weight"):
            B = permute(B, int(config.get("num_key_value_heads") or config["num_attention_heads"]))
        deltas[base] = (B @ A) * scale
    return deltas


def np_array_2d(tensor):
    """A GGUFReader tensor as a numpy array in torch order ([rows, cols])."""
    import numpy as np

    shape = [int(size) for size in reversed(tensor.shape)]
    return np.asarray(tensor.data, dtype=np.float32).reshape(shape)
