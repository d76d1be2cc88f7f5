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
    # The README's first job: the shipped settings for the 32-row sample (all linear layers, lr 3e-3,
    # batch 8, 4 epochs), not the webui's large-dataset defaults; flags still override the file.
    code, out, err = run_cli("train", str(smollm2_dir), "--config", "sample", "--name", "facts", "--json")
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
