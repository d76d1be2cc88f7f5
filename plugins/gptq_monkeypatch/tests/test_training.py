"""LoRA training on a 4-bit GPTQ base: every LoRA tensor gets a gradient and the loss goes down."""

import importlib.util

import pytest
import torch

from lorakit.loader_api import LoadOptions
from lorakit.loader_registry import all_loaders

TEXT = "Paris is the capital of France. The quick brown fox jumps over the lazy dog."


def lora_grads(model):
    return {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


def test_peft_lora_trains_on_the_patched_gptq_model(tiny_gptq_dir):
    from peft import LoraConfig, get_peft_model

    session = all_loaders()["gptq_monkeypatch"].load(tiny_gptq_dir, LoadOptions(purpose="train"))
    ids = session.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        session.model(ids)  # the no-grad pass that silently breaks the engines' CPU kernels
    torch.manual_seed(0)
    model = get_peft_model(session.model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], lora_dropout=0.0))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for step in range(20):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if step == 1:  # after one update B is non-zero, so A gets gradients too
            grads = lora_grads(model)
            assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values()), "a LoRA tensor got no gradient"
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    print(f"\nloss {losses[0]:.3f} -> {losses[-1]:.3f} in 20 steps on the 4-bit GPTQ tiny model")
    # A random tiny model starts at ln(512) = 6.2 and LoRA on its layers alone levels off near 5.0.
    assert losses[-1] < losses[0] - 1.0
    assert all(later <= earlier + 1e-3 for earlier, later in zip(losses, losses[1:]))


@pytest.mark.xfail(
    importlib.util.find_spec("lorakit.commands.train") is None,
    reason="`lorakit train` is not written yet (lorakit/commands/train.py)",
    strict=False,
)
def test_lorakit_train_cli_lowers_the_loss_on_a_gptq_base(tiny_gptq_dir, tmp_path, run_cli):
    import json

    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": "Name the capital of France.", "output": "Paris."}] * 8))
    out = tmp_path / "lora-out"
    code, stdout, stderr = run_cli(
        "train", str(tiny_gptq_dir), "--loader", "gptq_monkeypatch", "--dataset", str(data), "--format", "alpaca",
        "--output", str(out), "--max-steps", "20", "--learning-rate", "1e-2", "--json",
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["final_loss"] < result["first_loss"]
    assert (out / "adapter_model.safetensors").is_file()
