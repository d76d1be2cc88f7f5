"""Meta's original LLaMA layout: ``consolidated.00.pth`` + ``params.json``, as alpaca-lora's export wrote it.

Hugging Face's conversion permuted the rows of q_proj and k_proj so rotary embeddings work on
halves instead of interleaved pairs; Meta's code expects the interleaved order, so the export undoes
that permutation (k uses the key/value head count). ``from_meta`` is the exact inverse, used to verify
the written file.
"""

from __future__ import annotations

import math
import re

from lorakit.errors import LorakitError

_RENAMES = [
    (r"model\.embed_tokens\.weight", "tok_embeddings.weight"),
    (r"model\.norm\.weight", "norm.weight"),
    (r"lm_head\.weight", "output.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.q_proj\.weight", r"layers.\1.attention.wq.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.k_proj\.weight", r"layers.\1.attention.wk.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.v_proj\.weight", r"layers.\1.attention.wv.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.weight", r"layers.\1.attention.wo.weight"),
    (r"model\.layers\.(\d+)\.mlp\.gate_proj\.weight", r"layers.\1.feed_forward.w1.weight"),
    (r"model\.layers\.(\d+)\.mlp\.down_proj\.weight", r"layers.\1.feed_forward.w2.weight"),
    (r"model\.layers\.(\d+)\.mlp\.up_proj\.weight", r"layers.\1.feed_forward.w3.weight"),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", r"layers.\1.attention_norm.weight"),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", r"layers.\1.ffn_norm.weight"),
]
_SKIPPED = re.compile(r".*rotary_emb\.inv_freq$")


def _rename(name: str, table) -> str | None:
    for pattern, replacement in table:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    return None


def meta_name(name: str) -> str | None:
    """Meta's key for a HF Llama tensor; ``None`` for tensors Meta does not store (rotary buffers)."""
    if _SKIPPED.fullmatch(name):
        return None
    found = _rename(name, _RENAMES)
    if found is None:
        raise LorakitError(f"the Meta state_dict layout has no place for {name}", "use --format hf")
    return found


def _invert(hf_pattern: str, meta_replacement: str) -> tuple[str, str]:
    meta_pattern = re.escape(meta_replacement).replace(re.escape("\\1"), r"(\d+)")
    return meta_pattern, hf_pattern.replace(r"(\d+)", r"\1").replace(r"\.", ".")


_INVERSE = [_invert(hf, meta) for hf, meta in _RENAMES]


def hf_name(meta_key: str) -> str:
    found = _rename(meta_key, _INVERSE)
    if found is None:
        raise LorakitError(f"unknown Meta LLaMA key {meta_key}")
    return found


def _heads(config: dict) -> tuple[int, int, int]:
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    return heads, kv_heads, int(config["hidden_size"]) // heads


def unpermute(weight, heads: int):
    """HF rotary row order -> Meta's (undo ``convert_llama_weights_to_hf.permute``)."""
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def permute(weight, heads: int):
    """Meta's rotary row order -> HF's (what ``convert_llama_weights_to_hf`` does)."""
    rows, cols = weight.shape
    return weight.reshape(heads, rows // heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def check_llama(config: dict, label: str) -> None:
    architectures = config.get("architectures") or []
    if "LlamaForCausalLM" not in architectures:
        got = architectures[0] if architectures else config.get("model_type", "unknown")
        raise LorakitError(f"--format state_dict writes Meta's LLaMA layout, and {label} is a {got}", "use --format hf for other architectures")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise LorakitError(f"{label} has attention or MLP biases, which Meta's LLaMA layout cannot hold", "use --format hf")
    heads, _, head_dim = _heads(config)
    if int(config.get("head_dim") or head_dim) != head_dim:
        raise LorakitError(f"{label} has head_dim {config['head_dim']}, but Meta's layout assumes hidden_size / heads = {head_dim}", "use --format hf")


def to_meta(name: str, tensor, config: dict):
    """``(meta_key, tensor)`` for a merged HF tensor, with the rotary permutation undone."""
    key = meta_name(name)
    if key is None:
        return None, None
    heads, kv_heads, _ = _heads(config)
    if key.endswith("attention.wq.weight"):
        tensor = unpermute(tensor, heads)
    elif key.endswith("attention.wk.weight"):
        tensor = unpermute(tensor, kv_heads)
    return key, tensor.contiguous()


def from_meta(state: dict, config: dict) -> dict:
    """HF names and row order for a Meta state dict (the inverse of :func:`to_meta`)."""
    heads, kv_heads, _ = _heads(config)
    converted = {}
    for key, tensor in state.items():
        if key.endswith("attention.wq.weight"):
            tensor = permute(tensor, heads)
        elif key.endswith("attention.wk.weight"):
            tensor = permute(tensor, kv_heads)
        converted[hf_name(key)] = tensor
    return converted


def _meta_hidden(dim: int, multiple_of: int, multiplier: float | None) -> int:
    hidden = int(2 * (4 * dim) / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def _ffn_params(dim: int, intermediate: int) -> dict:
    """``multiple_of`` (and ``ffn_dim_multiplier`` if needed) so Meta's formula gives ``intermediate_size``."""
    for multiple_of in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        if _meta_hidden(dim, multiple_of, None) == intermediate:
            return {"multiple_of": multiple_of}
    base = int(2 * (4 * dim) / 3)
    for multiple_of in (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
        for multiplier in (round(intermediate / base, 4), round(intermediate / base, 6), intermediate / base):
            if _meta_hidden(dim, multiple_of, multiplier) == intermediate:
                return {"multiple_of": multiple_of, "ffn_dim_multiplier": multiplier}
    raise LorakitError(f"cannot express intermediate_size {intermediate} in Meta's params.json (dim {dim})", "use --format hf")


def params_json(config: dict) -> dict:
    heads, kv_heads, _ = _heads(config)
    dim = int(config["hidden_size"])
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    params = {
        "dim": dim,
        "n_layers": int(config["num_hidden_layers"]),
        "n_heads": heads,
        **({"n_kv_heads": kv_heads} if kv_heads != heads else {}),
        "vocab_size": int(config["vocab_size"]),
        **_ffn_params(dim, int(config["intermediate_size"])),
        "norm_eps": float(config.get("rms_norm_eps", 1e-5)),
        "rope_theta": float(config.get("rope_theta") or rope.get("rope_theta") or 10000.0),
    }
    if str(rope.get("rope_type", rope.get("type", "default"))) == "llama3":
        params["use_scaled_rope"] = True
    if not math.isfinite(params["norm_eps"]):
        raise LorakitError("rms_norm_eps is not a finite number")
    return params
