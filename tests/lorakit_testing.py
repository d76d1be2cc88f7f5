"""Builders shared by every test folder: a tiny random Llama, real PEFT adapters, shared data.

Import them as ``from lorakit_testing import ...`` (several test folders have their own conftest.py,
so ``from conftest import`` would be ambiguous).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("LORAKIT_TEST_CACHE", Path.home() / ".cache" / "lorakit-tests"))
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog. Paris is the capital of France. "
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. "
    "### Instruction: ### Input: ### Response: user assistant system hello world lorakit adapters "
    "To be, or not to be, that is the question. 0 1 2 3 4 5 6 7 8 9 { } [ ] < > | / \\ : ; , . ! ? ' \" "
) * 4
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([TINY_CORPUS], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(folder: Path, seed: int = 0, **overrides) -> Path:
    """A random Llama (hidden 64, 2 layers, vocab 512) saved as a normal Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    settings = dict(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    settings.update(overrides)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**settings))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_peft_adapter(base_dir: Path, out_dir: Path, seed: int = 1, r: int = 4, alpha: int = 8, targets=("q_proj", "v_proj"), scale: float = 0.5, **extra) -> Path:
    """A real PEFT LoRA with non-zero B (so it changes the output), saved in PEFT's format."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, task_type="CAUSAL_LM", **extra)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "lora_A" in name:
                param.normal_(0.0, scale)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data {name} not present")
    return path


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


@contextmanager
def single_lora_loader():
    """A loader named ``single`` that holds one LoRA and removes it by reloading the base, registered
    for the ``with`` block; written against the public API only, as a third party would."""
    import lorakit
    from lorakit.api import Capabilities, Loader, PeftSession
    from lorakit.plugin.host import plugin_manager

    class Single(Loader):
        name = "single"
        capabilities = Capabilities(max_loras=1, removal="reload", precisions=("fp32",))
        session_class = PeftSession

    class Plugin:
        @lorakit.hookimpl
        def register_loaders(self, register):
            register(Single())

    pm = plugin_manager()
    pm.register(Plugin(), name="single-plugin")
    try:
        yield
    finally:
        pm.unregister(name="single-plugin")
