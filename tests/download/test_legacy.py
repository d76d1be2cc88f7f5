"""A replica of the 2023 tloen/alpaca-lora-7b layout (pickle weights, old config keys) for the tiny Llama:
served by the loopback hub, then download -> generate (legacy) -> convert -> generate, equal to PEFT."""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch
from fake_hub_server import MODEL, read_folder

from lorakit.store import home

REPLICA = "lorakit-test/alpaca-lora-2023"
FOLDER = "lorakit-test_alpaca-lora-2023"


def tloen_config(base: str) -> dict:
    """The keys and values of tloen/alpaca-lora-7b's adapter_config.json (PEFT of March 2023)."""
    return {
        "base_model_name_or_path": base, "bias": "none", "enable_lora": None, "fan_in_fan_out": False,
        "inference_mode": True, "lora_alpha": 16, "lora_dropout": 0.05, "merge_weights": False,
        "modules_to_save": None, "peft_type": "LORA", "r": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "task_type": "CAUSAL_LM",
    }


@pytest.fixture
def replica(hub, tiny_model_dir, make_adapter, tmp_path):
    """PEFT makes the LoRA; torch.save writes it as 2023 PEFT did (fp16, no adapter name in the keys)."""
    from safetensors.torch import load_file

    made = make_adapter(tiny_model_dir, tmp_path / "made", r=16, alpha=16, targets=("q_proj", "k_proj", "v_proj", "o_proj"), scale=0.1)
    state = {name: tensor.to(torch.float16) for name, tensor in load_file(made / "adapter_model.safetensors").items()}
    assert all(name.startswith("base_model.model.model.layers.") and ".default" not in name for name in state)
    folder = tmp_path / "tloen-replica"
    folder.mkdir()
    torch.save(state, folder / "adapter_model.bin")
    (folder / "adapter_config.json").write_text(json.dumps(tloen_config(MODEL), indent=2))
    (folder / "README.md").write_text("alpaca-lora replica\n")
    hub.add_commit(REPLICA, read_folder(folder))
    return folder


def _generate(run_cli, model, lora, *extra):
    code, out, err = run_cli("generate", str(model), "--lora", lora, "--prompt", "hello", "--greedy", "--max-new-tokens", "5",
                             "--json", "--template", "raw", *extra)
    assert code == 0, err
    return json.loads(out)["output"], err


def test_download_generate_convert_generate_equals_peft(hub, run_cli, replica, tiny_model_dir, tmp_path):
    code, out, err = run_cli("download", REPLICA)
    assert code == 0, err
    assert f"lorakit convert {FOLDER} --allow-pickle" in err
    folder = home.loras_dir() / FOLDER

    # Before converting: refused without --allow-pickle, and with it PEFT's warning stays off the terminal.
    code, _, err = run_cli("generate", str(tiny_model_dir), "--lora", FOLDER, "--prompt", "x")
    assert code == 1 and "--allow-pickle" in err
    legacy_text, err = _generate(run_cli, tiny_model_dir, FOLDER, "--allow-pickle")
    assert "Unexpected keyword" not in err and "upgrade the PEFT" not in err
    assert f"lorakit convert {FOLDER} --allow-pickle" in err

    code, _, err = run_cli("convert", FOLDER)
    assert code == 1 and "--allow-pickle" in err and not (folder / "adapter_model.safetensors").exists()
    code, out, err = run_cli("convert", FOLDER, "--allow-pickle", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dropped_keys"] == ["enable_lora", "merge_weights"] and report["tensors"] == 4 * 2 * 2
    assert report["source_sha256"] == hashlib.sha256((replica / "adapter_model.bin").read_bytes()).hexdigest()
    record = json.loads((folder / "lorakit_convert.json").read_text())
    assert record["source_sha256"] == report["source_sha256"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert not (folder / "adapter_config.json").is_symlink() and (folder / "adapter_config.json").stat().st_mode & 0o200
    assert "enable_lora" not in config and "merge_weights" not in config and config["r"] == 16
    # The cache's copies are untouched (the converted files replaced the links, not the blobs).
    snapshot = tmp_path / "hf-cache" / "models--lorakit-test--alpaca-lora-2023" / "snapshots" / hub.repos[REPLICA].refs["main"]
    assert (snapshot / "adapter_config.json").read_bytes() == (replica / "adapter_config.json").read_bytes()
    assert (folder / "adapter_model.bin").is_symlink() and not (snapshot / "adapter_model.safetensors").exists()
    assert run_cli("download", REPLICA, "--check")[0] == 0
    code, _, err = run_cli("download", REPLICA)
    assert code == 0 and "already in" in err

    # From then on: safetensors, the fast folded path, no warning of any kind, same text.
    text, err = _generate(run_cli, tiny_model_dir, FOLDER)
    assert text == legacy_text and "warning" not in err.lower()

    # Equal to PEFT on the original 2023 files (the oracle loads the pickle itself).
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lorakit.api import LoadOptions
    from lorakit.inference.planning import open_session

    session, plan = open_session(str(tiny_model_dir), [FOLDER], options=LoadOptions(cpu=True), quiet=True)
    assert not plan.loras[0].adapter.is_pickle
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    ours = session.forward_logits(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), str(replica))
    with torch.no_grad():
        theirs = oracle(ids).logits
    assert torch.allclose(ours.float(), theirs.float(), atol=1e-4), (ours - theirs).abs().max()


def test_download_convert_in_one_step_and_next_command(hub, run_cli, replica):
    code, out, err = run_cli("download", REPLICA, "--convert", "--allow-pickle", "--json")
    assert code == 0, err
    folder = home.loras_dir() / FOLDER
    assert (folder / "adapter_model.safetensors").is_file() and "Dropped 2023 config keys: enable_lora, merge_weights" in err
    assert json.loads(out)["next_command"] == f"lorakit generate {MODEL} --lora {FOLDER} --prompt 'Hello'"


def test_a_base_that_left_the_hub_is_named_where_it_lives_now(tmp_path):
    from lorakit.store.legacy import convert_adapter, live_base

    assert live_base("decapoda-research/llama-7b-hf") == "huggyllama/llama-7b"
    folder = tmp_path / "tloen"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(tloen_config("decapoda-research/llama-7b-hf")))
    torch.save({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": torch.zeros(2, 4)}, folder / "adapter_model.bin")
    result = convert_adapter(folder, allow_pickle=True)
    assert result.base_after == "huggyllama/llama-7b" and result.renamed == 1
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "huggyllama/llama-7b"
    from safetensors import safe_open

    with safe_open(folder / "adapter_model.safetensors", "pt") as handle:
        assert list(handle.keys()) == ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    from lorakit.commands.convert import next_command

    assert next_command(folder, "tloen").startswith("lorakit generate huggyllama/llama-7b --lora tloen")


class Payload:
    """Stands in for whatever a malicious pickle would construct."""


def test_a_pickle_with_code_or_no_tensors_is_refused(tmp_path, run_cli):
    folder = home.loras_dir() / "evil"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(tloen_config("x/y")))
    torch.save({"weights": torch.zeros(1), "thing": Payload()}, folder / "adapter_model.bin")
    code, _, err = run_cli("convert", "evil", "--allow-pickle")
    assert code == 1 and "more than plain tensors" in err and not (folder / "adapter_model.safetensors").exists()
    torch.save({"weights": torch.zeros(1), "thing": {1, 2}}, folder / "adapter_model.bin")
    code, _, err = run_cli("convert", "evil", "--allow-pickle")
    assert code == 1 and "'thing', which is not a tensor" in err and not (folder / "adapter_model.safetensors").exists()
