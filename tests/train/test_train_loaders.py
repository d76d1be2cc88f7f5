"""`lorakit train --loader`: QLoRA-style training on GPTQ checkpoints through either GPTQ backend."""

import json

import pytest
from train_helpers import TINY_ARGS

RUN = ("--batch-size", "4", "--micro-batch-size", "2", "--epochs", "2", "--target-modules", "all-linear", *TINY_ARGS)
PROJECTIONS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.mark.parametrize("loader, precision", [("autogptq", "bf16"), ("gptq_monkeypatch", "fp32")])
def test_all_linear_lora_trains_on_a_gptq_checkpoint_and_loads_back(run_cli, tiny_gptq_dir, tiny_dataset, lorakit_home, loader, precision):
    code, out, err = run_cli("train", str(tiny_gptq_dir), "--loader", loader, "--dataset", str(tiny_dataset), "--name", "g", *RUN,
                             "--precision", precision, "--json")
    assert code == 0, err
    folder = lorakit_home / "loras" / "g"
    config = json.loads((folder / "adapter_config.json").read_text())
    # GPTQModel's QuantLinear is not an nn.Linear, so PEFT's own all-linear would find nothing there.
    assert sorted({name.rsplit(".", 1)[-1] for name in config["target_modules"]}) == PROJECTIONS
    losses = [step["loss"] for step in json.loads((folder / "training_log.json").read_text())["steps"]]
    assert losses[-1] < losses[0]
    assert json.loads((folder / "training_parameters.json").read_text())["loader"] == loader

    code, out, err = run_cli("generate", str(tiny_gptq_dir), "--loader", loader, "--lora", "g", "--greedy", "--max-new-tokens", "4",
                             "--prompt", "hello", "--json")
    assert code == 0, err


def test_loader_flag_mistakes_get_one_line(run_cli, tiny_model_dir, tiny_gptq_dir, tiny_dataset):
    code, _, err = run_cli("train", str(tiny_model_dir), "--loader", "nope", "--dataset", str(tiny_dataset), "--name", "x", *RUN)
    assert code != 0 and "unknown loader 'nope'" in err and err.count("Error:") == 1 and "Traceback" not in err
    code, _, err = run_cli("train", str(tiny_gptq_dir), "--loader", "autogptq", "--dataset", str(tiny_dataset), "--name", "x", *RUN)
    assert code != 0 and "--precision bf16" in err and "--dtype" not in err
