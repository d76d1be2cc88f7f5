"""--val-set-size, --load-best, --early-stopping-patience, --max-steps, --weight-decay on the tiny model."""

from __future__ import annotations

import json
import shutil

import torch
from train_helpers import FACTS, TINY_ARGS, adapter_tensors, assert_same_adapter

RUN = ("--batch-size", "4", "--micro-batch-size", "2", *TINY_ARGS)


def _train(run_cli, model, dataset, out, *args):
    code, stdout, err = run_cli("train", str(model), "--dataset", str(dataset), "--output", str(out), *RUN, "--json", *args)
    assert code == 0, err
    return json.loads(stdout), err


def _log(folder):
    return json.loads((folder / "training_log.json").read_text())["steps"]


def test_validation_split_is_seeded_and_disjoint():
    from lorakit.training.held_out import held_out_count, split

    examples = list(range(40))
    train, held = split(examples, 0.25, seed=1)
    assert len(held) == 10 and sorted(train + held) == examples and not set(train) & set(held)
    assert split(examples, 0.25, seed=1) == (train, held)
    assert split(examples, 0.25, seed=2)[1] != held
    assert len(split(examples, 7, seed=1)[1]) == 7 and held_out_count(0.001, 40) == 1
    assert split(examples, 0, seed=1) == (examples, [])


def test_eval_history_from_the_log():
    from lorakit.training.held_out import EvalHistory

    history = EvalHistory.from_log([{"step": 1, "eval_loss": 2.0}, {"step": 2}, {"step": 3, "eval_loss": 1.5},
                                    {"step": 4, "eval_loss": 1.5}, {"step": 5, "eval_loss": float("nan")}])
    assert (history.best_step, history.best_loss, history.since_best) == (3, 1.5, 2)
    assert history.should_stop(2) and not history.should_stop(3) and not history.should_stop(0)


def test_load_best_keeps_the_lowest_eval_loss_and_early_stop_resumes_exactly(run_cli, tiny_model_dir, tmp_path):
    """A learning rate that overshoots: the eval loss rises after the first steps, so the best is not the last step."""
    dataset = tmp_path / "facts.json"
    dataset.write_text(json.dumps(FACTS * 3))
    out = tmp_path / "best"
    args = ("--val-set-size", "0.25", "--eval-steps", "1", "--epochs", "20", "--learning-rate", "0.3", "--scheduler", "constant",
            "--load-best", "--early-stopping-patience", "3", "--save-steps", "2")
    summary, err = _train(run_cli, tiny_model_dir, dataset, out, *args)
    evals = [(entry["step"], entry["eval_loss"]) for entry in _log(out) if "eval_loss" in entry]
    best_step, best_loss = min(evals, key=lambda item: item[1])
    assert summary["held_out_examples"] == 6 and summary["examples"] == 18
    assert summary["stopped"] == "early_stop" and summary["completed_steps"] < summary["total_steps"], evals
    assert summary["best_step"] == best_step < summary["completed_steps"] and summary["best_eval_loss"] == best_loss
    assert [step for step, _ in evals[-3:]] == [best_step + 1, best_step + 2, best_step + 3]  # patience 3
    assert summary["loaded_best"].endswith(f"checkpoint-{best_step}") and "stopping early" in err
    assert_same_adapter(out, out / f"checkpoint-{best_step}", atol=0)

    # Resume from the checkpoint before the stop (later parts removed, as a kill would leave it): the
    # same evaluations, the same stop, the same kept adapter.
    last = summary["completed_steps"]
    first = max(step for step in range(2, last, 2))
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    for path in resumed.iterdir():
        if path.name.startswith("checkpoint-") and int(path.name.split("-")[1]) > first or path.name.startswith("adapter_"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    code, stdout, err = run_cli("train", "--output", str(resumed), "--resume", "--json")
    assert code == 0, err
    again = json.loads(stdout)
    assert again["resumed_from_step"] == first
    assert (again["stopped"], again["completed_steps"], again["best_step"]) == ("early_stop", last, best_step)
    assert_same_adapter(resumed, out, atol=1e-6)

    # Resuming the stopped run trains nothing more: its patience is used up.
    code, stdout, err = run_cli("train", "--output", str(resumed), "--resume", "--json")
    assert code == 0, err
    assert (json.loads(stdout)["stopped"], json.loads(stdout)["completed_steps"]) == ("early_stop", last) and "nothing left to train" in err
    assert_same_adapter(resumed, out, atol=1e-6)


def test_max_steps_cycles_epochs_and_weight_decay_shrinks_the_weights(run_cli, tiny_model_dir, tiny_dataset, tmp_path):
    summary, _ = _train(run_cli, tiny_model_dir, tiny_dataset, tmp_path / "plain", "--max-steps", "6", "--epochs", "1")
    assert summary["completed_steps"] == summary["total_steps"] == 6  # 16 examples, 4 per step: 4 per epoch
    assert [entry["epoch"] for entry in _log(tmp_path / "plain")][-1] == 1.5
    _train(run_cli, tiny_model_dir, tiny_dataset, tmp_path / "decayed", "--max-steps", "6", "--epochs", "1", "--weight-decay", "5")
    plain, decayed = adapter_tensors(tmp_path / "plain"), adapter_tensors(tmp_path / "decayed")
    a_plain = sum(t.norm() for k, t in plain.items() if "lora_A" in k)
    a_decayed = sum(t.norm() for k, t in decayed.items() if "lora_A" in k)
    assert a_decayed < 0.99 * a_plain


def test_optimizers_take_the_weight_decay():
    from lorakit.training.optim import make_optimizer

    params = [torch.nn.Parameter(torch.ones(2))]
    for name in ("adamw_torch", "sgd", "adagrad", "rmsprop", "adafactor"):
        assert make_optimizer(name, params, 1e-3, "cpu", weight_decay=0.01).param_groups[0]["weight_decay"] == 0.01
