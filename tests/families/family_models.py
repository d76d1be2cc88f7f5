"""Tiny random models of every supported family, built offline from configs, and real PEFT adapters on them.

Each model has hidden 64, 2 layers, 4 heads / 2 KV heads and the shared 512-token BPE tokenizer, so
one builds in milliseconds; MoE models get 4 experts (2 per token). The adapters are made by PEFT
itself (the oracle), on every linear layer and, for MoE families, on the experts' fused weights
(``target_parameters``), with random non-zero A and B.
"""

from __future__ import annotations

from pathlib import Path

from lorakit_testing import build_tiny_tokenizer

COMMON = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512)
_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True)

# family -> (transformers model_type, config overrides)
FAMILIES = {
    "llama": ("llama", dict(tie_word_embeddings=False)),
    "mistral": ("mistral", dict(tie_word_embeddings=False, sliding_window=None)),
    "qwen2": ("qwen2", dict(tie_word_embeddings=False)),
    "qwen3": ("qwen3", dict(head_dim=16, tie_word_embeddings=False)),
    "gemma2": ("gemma2", dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=64, tie_word_embeddings=True)),
    "gemma3": ("gemma3_text", dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=64, tie_word_embeddings=True)),
    "phi3": ("phi3", dict(tie_word_embeddings=False)),
    "mixtral": ("mixtral", dict(num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False)),
    "qwen2-moe": ("qwen2_moe", dict(_MOE, shared_expert_intermediate_size=64, decoder_sparse_step=1, tie_word_embeddings=False)),
    "qwen3-moe": ("qwen3_moe", dict(_MOE, head_dim=16, decoder_sparse_step=1, tie_word_embeddings=False)),
}
MOE = ("mixtral", "qwen2-moe", "qwen3-moe")
EXPERT_PARAMS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def build_family_model(family: str, folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, overrides = FAMILIES[family]
    tokenizer = build_tiny_tokenizer()
    settings = dict(COMMON, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    settings.update(overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **settings), dtype=torch.float32)
    with torch.no_grad():  # random norms too, so a LoRA's effect is not hidden by unit weights
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5) if family not in ("gemma2", "gemma3") else param.uniform_(-0.5, 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_family_adapter(base: Path, out: Path, experts: bool, seed: int = 1, r: int = 4, alpha: int = 8, scale: float = 0.2, **extra) -> Path:
    """A PEFT LoRA on all linear layers (and the experts when asked), random A and B, saved by PEFT."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=extra.pop("target_modules", "all-linear"), lora_dropout=0.0,
                        target_parameters=EXPERT_PARAMS if experts else None, task_type="CAUSAL_LM", **extra)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.normal_(0.0, scale)
    peft_model.save_pretrained(out, safe_serialization=True)
    return out
