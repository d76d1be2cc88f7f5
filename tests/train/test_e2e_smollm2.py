"""End to end on the real SmolLM2-135M: a short run on the shipped made-up-facts dataset lowers the
loss, and the trained LoRA answers a made-up fact that the base model cannot."""

from __future__ import annotations

import json

import pytest
import torch

PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
          "### Instruction:\n{}\n\n### Response:\n")
QUESTION, FACT = "Who is the mayor of Quillhaven?", "Odalys Penhallow"


def _answer(model, tokenizer, question: str) -> str:
    ids = tokenizer(PROMPT.format(question), return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_sample_facts_are_learned(run_cli, smollm2_dir, lorakit_home):
    # The defaults (rank 32 on q/v, lr 3e-4, batch 128) are the webui's, made for large datasets;
    # a 32-row dataset learns in 16 steps with a higher rate on all linear layers.
    code, out, err = run_cli("train", str(smollm2_dir), "--dataset", "sample", "--name", "facts", "--rank", "16", "--alpha", "32",
                             "--target-modules", "all-linear", "--learning-rate", "3e-3", "--warmup-steps", "0",
                             "--scheduler", "constant", "--batch-size", "8", "--micro-batch-size", "8", "--epochs", "4",
                             "--add-eos", "--json")
    assert code == 0, err
    summary = json.loads(out)
    log = json.loads((lorakit_home / "loras" / "facts" / "training_log.json").read_text())["steps"]
    first, last = log[0]["loss"], sum(entry["loss"] for entry in log[-4:]) / 4
    assert last < first / 4, (first, last)
    assert summary["completed_steps"] == 16

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    before = _answer(base, tokenizer, QUESTION)
    assert FACT not in before
    tuned = PeftModel.from_pretrained(base, str(lorakit_home / "loras" / "facts"))
    after = _answer(tuned, tokenizer, QUESTION)
    assert FACT in after, after
