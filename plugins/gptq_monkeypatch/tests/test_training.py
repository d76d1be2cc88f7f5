"""LoRA training on a 4-bit GPTQ base: every LoRA tensor gets a gradient and the loss goes down."""

import itertools

import torch

from lorakit.api import LoadOptions
from lorakit.loaders.registry import all_loaders

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
    assert all(later <= earlier + 1e-3 for earlier, later in itertools.pairwise(losses))


def test_lorakit_train_lowers_the_loss_on_a_gptq_base(tiny_gptq_dir, tmp_path, run_cli):
    import json

    rows = [{"instruction": f"What is fact number {i}?", "input": "", "output": f"Fact {i} is that the fox is brown."} for i in range(8)]
    data = tmp_path / "facts.json"
    data.write_text(json.dumps(rows))
    out = tmp_path / "gptq-lora"
    code, stdout, stderr = run_cli(
        "train", str(tiny_gptq_dir), "--dataset", str(data), "--format", "alpaca", "--output", str(out),
        "--epochs", "5", "--batch-size", "4", "--micro-batch-size", "4", "--warmup-steps", "0", "--learning-rate", "1e-2",
        "--rank", "8", "--alpha", "16", "--dropout", "0", "--target-modules", "all-linear", "--json",
        env={"LORAKIT_DISABLE_PLUGINS": "autogptq_loader"},  # the GPTQ checkpoint then resolves to gptq_monkeypatch
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    print(f"\nlorakit train on the 4-bit GPTQ tiny model: loss {summary['first_loss']:.3f} -> {summary['final_loss']:.3f}")
    assert summary["completed_steps"] == 10
    assert summary["final_loss"] < summary["first_loss"] - 0.3
    assert (out / "adapter_model.safetensors").is_file()
