"""Independent references for the eval tests: the documented perplexity loop, and LoRA training.

Nothing here imports lorakit: these are the oracles lorakit's numbers are checked against.
Shared builders and data come from ``lorakit_testing`` (``shared_data`` skips when a file is absent).
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def documented_perplexity(model, input_ids, max_length: int, stride: int, labels=None, literal_count: bool = False):
    """The loop of the transformers documentation ("Perplexity of fixed-length models"), plain.

    Returns ``(mean_nll, tokens)``. ``literal_count=True`` weights each window's mean loss by the
    documentation's ``num_valid_tokens - batch_size``; that equals the number of tokens the loss
    averaged only when windows do not overlap (stride == max_length). With overlap the loss of a
    later window averages ``trg_len`` tokens (its first valid label is past position 0), so the
    exact count -- the labels left after the model's internal shift -- is the default here.
    """
    import torch

    seq_len = input_ids.size(1)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end
        window = input_ids[:, begin_loc:end_loc]
        target_ids = (window if labels is None else labels[:, begin_loc:end_loc]).clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(window, labels=target_ids).loss
        if literal_count:
            counted = int((target_ids != -100).sum()) - target_ids.size(0)
        else:
            counted = int((target_ids[:, 1:] != -100).sum())
        if counted > 0:
            nll_sum += loss.item() * counted
            n_tokens += counted
        prev_end = end_loc
        if end_loc == seq_len:
            break
    return nll_sum / n_tokens, n_tokens


def train_lora_on_text(model_dir: Path, text: str, out_dir: Path, steps: int = 30, lr: float = 3e-3, block: int = 64, seed: int = 0) -> Path:
    """A real PEFT LoRA trained for a few steps on ``text`` (blocks of ``block`` tokens), saved as PEFT saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"))
    ids = torch.tensor(tokenizer(text)["input_ids"])
    blocks = ids[: (len(ids) // block) * block].view(-1, block)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        batch = blocks[step % len(blocks)].unsqueeze(0)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def scaled_adapter_copy(adapter_dir: Path, out_dir: Path, weight: float) -> Path:
    """The same adapter with ``lora_alpha`` scaled: PEFT loading it computes what weight ``w`` means."""
    out_dir.mkdir(parents=True)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config["lora_alpha"] = config["lora_alpha"] * weight
    (out_dir / "adapter_config.json").write_text(json.dumps(config))
    (out_dir / "adapter_model.safetensors").write_bytes((adapter_dir / "adapter_model.safetensors").read_bytes())
    return out_dir


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def one_error_line(stderr: str) -> str:
    """The single ``Error: ...`` line the CLI's error boundary prints (and nothing like a traceback)."""
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def perplexity(mean_nll: float) -> float:
    return math.exp(mean_nll)
