"""The model and adapters the benchmarks share: the real SmolLM2-135M and PEFT LoRAs made on the spot.

Nothing lands in the repository: the converted model is cached under ``$LORAKIT_HOME`` when set,
else ``~/.cache/lorakit-bench``; adapters are written to temporary folders by the benchmark itself.
"""

from __future__ import annotations

import os
from pathlib import Path

BENCH_HOME = Path.home() / ".cache" / "lorakit-bench"
PROMPT = "Write a short story about a robot who learns to paint, in five sentences."


def bench_home() -> Path:
    """Point lorakit at the benchmark home (unless the caller chose one) and return it."""
    if not os.environ.get("LORAKIT_HOME"):
        os.environ["LORAKIT_HOME"] = str(BENCH_HOME)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return Path(os.environ["LORAKIT_HOME"])


def smollm2() -> Path:
    """The embedded SmolLM2-135M-Instruct as a Hugging Face folder (converted once, then reused)."""
    bench_home()
    from lorakit.store.models import resolve_model

    return resolve_model(None)


def make_adapter(base_dir: Path, out_dir: Path, *, seed: int, r: int = 8, alpha: int = 16,
                 targets=("q_proj", "v_proj"), scale: float = 0.02) -> Path:
    """A real PEFT LoRA with random non-zero A and B (so it changes the output), in PEFT's format."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.normal_(0.0, scale)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


def load_reference(model_dir: Path, device: str, dtype):
    """The plain transformers way: tokenizer + AutoModelForCausalLM on the same device and dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    model.eval()
    return model, tokenizer


def chat_ids(tokenizer, prompt: str = PROMPT):
    """The prompt through the model's chat template, as lorakit's generate command encodes it."""
    from lorakit.inference.prompts import encode, render

    text, special = render("chat", tokenizer, prompt)
    return encode(tokenizer, text, special)
