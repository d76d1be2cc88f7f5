"""`lorakit train` on the tiny model through the real CLI: outputs, reuse of parameters, refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from train_helpers import TINY_ARGS, adapter_tensors


def _train(run_cli, model, dataset, *args):
    return run_cli("train", str(model), "--dataset", str(dataset), *TINY_ARGS, "--batch-size", "4", "--micro-batch-size", "2", *args)


def _snapshot(folder):
    return {path.relative_to(folder).as_posix(): path.stat().st_mtime_ns for path in folder.rglob("*")}


def test_help_lists_the_flags_and_imports_no_torch():
    code = "import sys\nfrom lorakit.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    for flag in ("--name", "--dataset", "--raw-text", "--eval-dataset", "--target-modules", "--scheduler", "--resume", "--overwrite",
                 "--dry-run", "--copy-from", "--config", "--stop-at-loss", "--precision", "--load-in-4bit", "--use-dora", "--report-to",
                 "--gradient-checkpointing", "--weight-decay", "--max-steps", "--val-set-size", "--load-best", "--early-stopping-patience"):
        assert flag in done.stdout
    assert "TORCH False" in done.stdout


def test_outputs_of_a_run(run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    code, out, err = _train(run_cli, tiny_model_dir, tiny_dataset, "--name", "facts", "--epochs", "2", "--eval-dataset", str(tiny_dataset),
                            "--eval-steps", "2", "--save-steps", "3", "--json")
    assert code == 0, err
    summary = json.loads(out)
    folder = lorakit_home / "loras" / "facts"
    assert summary["output"] == str(folder) and summary["completed_steps"] == summary["total_steps"] == 8
    for name in ("adapter_model.safetensors", "adapter_config.json", "training_parameters.json", "training_log.json",
                 "prompt_format.json", "lorakit_base.json", "checkpoint-3", "checkpoint-6", "checkpoint-8"):
        assert (folder / name).exists(), name
    assert (folder / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    log = json.loads((folder / "training_log.json").read_text())
    assert [entry["step"] for entry in log["steps"]] == list(range(1, 9))
    assert all({"loss", "learning_rate", "tokens_per_s"} <= entry.keys() for entry in log["steps"])
    assert [entry["step"] for entry in log["steps"] if "eval_loss" in entry] == [2, 4, 6, 8]
    assert json.loads((folder / "prompt_format.json").read_text())["template"] == "alpaca"
    assert json.loads((folder / "lorakit_base.json").read_text())["hidden_size"] == 64
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4

    # PEFT loads the adapter on a fresh base and it changes the output.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        plain = base(ids).logits
        tuned = PeftModel.from_pretrained(base, str(folder))(ids).logits
    assert (plain - tuned).abs().max() > 1e-4
    assert all(tensor.numel() > 0 for tensor in adapter_tensors(folder).values())


def test_saved_parameters_are_reusable(run_cli, tiny_model_dir, tiny_dataset, lorakit_home, tmp_path):
    code, _, err = _train(run_cli, tiny_model_dir, tiny_dataset, "--name", "first", "--epochs", "1", "--rank", "2", "--scheduler", "cosine")
    assert code == 0, err
    saved = json.loads((lorakit_home / "loras" / "first" / "training_parameters.json").read_text())
    assert saved["rank"] == 2 and saved["scheduler"] == "cosine" and saved["model"] == str(tiny_model_dir)

    code, out, err = run_cli("train", "--copy-from", "first", "--name", "second", "--learning-rate", "1e-3", "--json")
    assert code == 0, err
    second = json.loads((lorakit_home / "loras" / "second" / "training_parameters.json").read_text())
    assert second["rank"] == 2 and second["scheduler"] == "cosine" and second["learning_rate"] == 1e-3 and second["name"] == "second"

    config = tmp_path / "job.yaml"
    config.write_text(f"model: {tiny_model_dir}\ndataset: {tiny_dataset}\nrank: 3\nepochs: 1\nbatch-size: 4\nmicro_batch_size: 2\nprecision: fp32\n")
    code, _, err = run_cli("train", "--config", str(config), "--name", "third", "--rank", "5")
    assert code == 0, err
    third = json.loads((lorakit_home / "loras" / "third" / "training_parameters.json").read_text())
    assert third["rank"] == 5 and third["batch_size"] == 4  # typed flags win over the file


def test_existing_name_is_refused_then_overwritten_on_request(run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    code, _, err = _train(run_cli, tiny_model_dir, tiny_dataset, "--name", "mine", "--epochs", "1")
    assert code == 0, err
    folder = lorakit_home / "loras" / "mine"
    before = _snapshot(folder)
    code, _, err = _train(run_cli, tiny_model_dir, tiny_dataset, "--name", "mine", "--epochs", "1")
    assert code == 2 and err.count("\n") == 1
    assert "already exists" in err and "--resume" in err and "--overwrite" in err
    assert _snapshot(folder) == before
    old_weights = adapter_tensors(folder)
    code, _, err = _train(run_cli, tiny_model_dir, tiny_dataset, "--name", "mine", "--epochs", "1", "--overwrite", "--seed", "7")
    assert code == 0, err
    new_weights = adapter_tensors(folder)
    assert any(not torch.equal(old_weights[key], new_weights[key]) for key in old_weights)
    assert not list(lorakit_home.joinpath("loras").glob(".mine.replaced-*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (("--scheduler", "sideways"), "unknown scheduler 'sideways'"),
        (("--optimizer", "adamq"), "unknown optimizer 'adamq'"),
        (("--rank", "0"), "--rank must be at least 1"),
        (("--eval-dataset", "missing.json"), "--eval-dataset 'missing.json' not found"),
        (("--batch-size", "1", "--micro-batch-size", "2"), "--batch-size 1 is smaller than --micro-batch-size 2"),
        (("--precision", "fp8"), "unknown precision 'fp8'"),
        (("--load-in-8bit", "--load-in-4bit"), "exclude each other"),
        (("--target-modules", "nope_proj"), "matches no layer of this model"),
    ],
)
def test_bad_parameters_get_one_line_and_touch_nothing(run_cli, tiny_model_dir, tiny_dataset, lorakit_home, args, message):
    code, out, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--name", "bad", "--precision", "fp32", *args)
    assert code != 0
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (lorakit_home / "loras" / "bad").exists()


def test_bad_data_gets_one_line(run_cli, tiny_model_dir, tmp_path, lorakit_home):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(broken), "--name", "bad")
    assert code != 0 and err.count("\n") == 1 and "line 3" in err
    text = tmp_path / "short.txt"
    text.write_text("tiny")
    code, _, err = run_cli("train", str(tiny_model_dir), "--raw-text", str(text), "--name", "bad", "--cutoff-len", "64", "--overlap-len", "64")
    assert code == 2 and "--cutoff-len" in err and "--overlap-len" in err
    code, _, err = run_cli("train", str(tiny_model_dir), "--name", "bad")
    assert code == 2 and "nothing to train on" in err
    assert not (lorakit_home / "loras" / "bad").exists()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--name", "boom", "--precision", "fp32",
                           "--learning-rate", "1e37", "--warmup-steps", "0", "--batch-size", "2", "--micro-batch-size", "2",
                           "--save-steps", "1")
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("Error: ") and err.count("Error") == 1, err
    assert "the loss became" in last and "checkpoint-" in err and "--learning-rate" in err
    folder = lorakit_home / "loras" / "boom"
    assert not (folder / "adapter_model.safetensors").exists()
    from lorakit.training.checkpoint import complete_checkpoints

    assert complete_checkpoints(folder)


def test_stop_at_loss(run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    code, out, err = _train(run_cli, tiny_model_dir, tiny_dataset, "--name", "early", "--stop-at-loss", "100", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["stopped"] == "stop_at_loss" and summary["completed_steps"] == 1
    assert (lorakit_home / "loras" / "early" / "adapter_model.safetensors").is_file()


def test_dry_run_trains_nothing(run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    code, out, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--name", "dry", "--dry-run")
    assert code == 0, err
    assert "nothing was trained" in err and out == ""
    code, out, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--name", "dry", "--dry-run", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 16 and {"text", "input_ids", "labels"} <= rows[0].keys()
    assert not (lorakit_home / "loras" / "dry").exists()


def test_qlora_on_cpu_keeps_training_after_an_eval(run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    """bitsandbytes 4-bit on CPU: without the workaround, gradients vanish after the first no-grad forward."""
    pytest.importorskip("bitsandbytes")
    code, out, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--name", "q4", "--load-in-4bit",
                             "--learning-rate", "1e-2", "--warmup-steps", "0", "--batch-size", "4", "--micro-batch-size", "4",
                             "--epochs", "2", "--eval-dataset", str(tiny_dataset), "--eval-steps", "1", "--json")
    assert code == 0, err
    log = json.loads((lorakit_home / "loras" / "q4" / "training_log.json").read_text())["steps"]
    assert all(entry["grad_norm"] > 0 for entry in log[1:])  # steps after an eval still get gradients
    assert log[-1]["eval_loss"] < log[0]["eval_loss"]


def test_config_sample_is_the_readme_job_and_flags_still_win(run_cli, tiny_model_dir, lorakit_home):
    code, out, err = run_cli("train", str(tiny_model_dir), "--config", "sample", "--epochs", "0.25", "--precision", "fp32", "--json")
    assert code == 0, err
    saved = json.loads((lorakit_home / "loras" / "sample-facts" / "training_parameters.json").read_text())
    assert saved["rank"] == 16 and saved["alpha"] == 32 and saved["target_modules"] == ["all-linear"] and saved["add_eos"] is True
    assert saved["learning_rate"] == 3e-3 and saved["batch_size"] == saved["micro_batch_size"] == 8 and saved["epochs"] == 0.25
    assert saved["dataset"].endswith("sample_facts.json")
