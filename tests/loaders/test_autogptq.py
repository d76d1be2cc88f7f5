"""The built-in autogptq loader (GPTQModel engine): recognition, one LoRA, removal by reload, training."""

import json
import shutil

import pytest
import torch
from gptq_fixtures import needs_engine

from lorakit.api import LoadOptions
from lorakit.builtin_plugins import autogptq_loader
from lorakit.errors import CapabilityError
from lorakit.loaders.registry import all_loaders, choose_loader
from lorakit.store.gptq_checkpoint import is_gptq_checkpoint, read_gptq_settings

IDS = torch.tensor([[1, 5, 7, 9, 11, 13, 40, 41, 300, 2]])


@pytest.fixture(scope="module")
def loader():
    return all_loaders()["autogptq"]


def test_recognises_gptq_checkpoints_from_either_config_file(tiny_gptq_dir, tiny_model_dir, tmp_path):
    assert is_gptq_checkpoint(tiny_gptq_dir) and not is_gptq_checkpoint(tiny_model_dir)
    assert read_gptq_settings(tiny_gptq_dir).describe() == "GPTQ 4-bit, group size 32, act-order, symmetric"

    only_quantize_config = shutil.copytree(tiny_gptq_dir, tmp_path / "old-style")
    config = json.loads((only_quantize_config / "config.json").read_text())
    del config["quantization_config"]
    (only_quantize_config / "config.json").write_text(json.dumps(config))
    assert is_gptq_checkpoint(only_quantize_config)

    awq = shutil.copytree(tiny_model_dir, tmp_path / "awq")
    config = json.loads((awq / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (awq / "config.json").write_text(json.dumps(config))
    assert not is_gptq_checkpoint(awq)


@needs_engine
def test_gptq_checkpoints_resolve_to_autogptq(tiny_gptq_dir, tiny_model_dir):
    assert choose_loader(tiny_gptq_dir, LoadOptions()).name == "autogptq"
    assert choose_loader(tiny_model_dir, LoadOptions()).name == "transformers"


def test_bad_combinations_are_explained_in_one_line(loader):
    with pytest.raises(CapabilityError, match="bf16 or fp16, not fp32") as error:
        loader.check_options(LoadOptions(dtype="fp32"))
    assert "gptq_monkeypatch" in error.value.one_line()
    with pytest.raises(CapabilityError, match="already quantized"):
        loader.check_options(LoadOptions(load_in_8bit=True))


def test_availability_names_the_engine_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    installed = {"gptqmodel": False, "auto_gptq": False}

    def find_spec(name, *args):
        if name in installed:
            return object() if installed[name] else None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    reason = autogptq_loader.AutoGPTQLoader().availability().reason
    assert "gptqmodel" in reason and "pip install gptqmodel==7.6.0" in reason

    installed["auto_gptq"] = True
    reason = autogptq_loader.AutoGPTQLoader().availability().reason
    assert "auto-gptq is installed but imports only with transformers 4.x" in reason


def test_two_loras_on_autogptq_are_refused_naming_the_backends_that_can(tiny_gptq_dir, tiny_adapter_dir, tiny_adapter2_dir, run_cli):
    code, stdout, stderr = run_cli("apply", str(tiny_gptq_dir), "--loader", "autogptq", "--dtype", "bf16",
                                   "--lora", str(tiny_adapter_dir), "--lora", str(tiny_adapter2_dir))
    assert code != 0 and stdout == ""
    line = stderr.strip()
    assert "\n" not in line and "loader 'autogptq' takes 1 LoRA at a time, 2 were given" in line
    assert "transformers" in line.split("loaders that can")[1]
    if "gptq_monkeypatch" in all_loaders():
        assert "gptq_monkeypatch" in line


@needs_engine
def test_one_lora_weight_and_removal_by_reload(loader, tiny_gptq_dir, tiny_adapter_dir, tiny_adapter2_dir):
    session = loader.load(tiny_gptq_dir, LoadOptions())
    base = session.forward_logits(IDS)
    session.add_lora("first", tiny_adapter_dir)
    full = session.forward_logits(IDS)
    assert (full.float() - base.float()).abs().max() > 0.1

    with pytest.raises(CapabilityError, match="takes 1 LoRA at a time") as error:
        session.add_lora("second", tiny_adapter2_dir)
    assert "loaders that can attach several LoRAs at once" in error.value.one_line()

    session.set_weight("first", 0.0)
    assert torch.equal(session.forward_logits(IDS), base)
    session.set_weight("first", 1.0)

    report = session.remove_lora("first")
    assert report.detail == "this backend cannot detach a LoRA, so the base model was reloaded"
    print(f"\nremoving the LoRA reloaded the base in {report.seconds:.2f} s")
    assert report.seconds > 0 and session.loras == []
    assert torch.equal(session.forward_logits(IDS), base)


@needs_engine
def test_lora_trains_on_the_engine_torch_kernel_after_a_no_grad_pass(loader, tiny_gptq_dir):
    """Why the record says train=True: with the torch kernel every LoRA tensor gets a gradient."""
    from peft import LoraConfig, get_peft_model

    session = loader.load(tiny_gptq_dir, LoadOptions(purpose="train"))
    ids = session.tokenizer("Paris is the capital of France. The quick brown fox jumps.", return_tensors="pt").input_ids
    with torch.no_grad():
        session.model(ids)  # breaks the engine's default/fused CPU kernels (GPTQModel 7.6), not the torch one
    torch.manual_seed(0)
    model = get_peft_model(session.model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"]))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for step in range(8):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if step == 1:
            grads = [p.grad for p in model.parameters() if p.requires_grad]
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3


@needs_engine
def test_json_stdout_stays_clean_of_the_engine_chatter(tiny_gptq_dir, tiny_adapter_dir, lorakit_home):
    """GPTQModel's logger writes a banner and log lines to stdout; `--json` must still be pure JSON."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LORAKIT_HOME": str(lorakit_home)}
    env.pop("LORAKIT_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "lorakit", "apply", str(tiny_gptq_dir), "--lora", str(tiny_adapter_dir), "--json"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{"), result.stdout[:200]
    assert json.loads(result.stdout)["loader"] == "autogptq"
