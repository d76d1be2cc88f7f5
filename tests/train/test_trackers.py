"""`--report-to tensorboard,wandb,mlflow`: every tracker gets the training log's scalars, offline (W&B offline
mode, an MLflow file store), and a resumed run continues the same MLflow run."""

from __future__ import annotations

import json
import shutil

import pytest
from train_helpers import TINY_ARGS

RUN = ("--batch-size", "4", "--micro-batch-size", "2", "--epochs", "2", *TINY_ARGS)


def test_all_three_trackers_record_the_run_and_resume_continues_it(run_cli, tiny_model_dir, tiny_dataset, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "tracked"
    code, stdout, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--output", str(out), *RUN,
                                "--val-set-size", "4", "--eval-steps", "2", "--save-steps", "3", "--report-to", "tensorboard,wandb,mlflow", "--json")
    assert code == 0, err
    assert "wandb:" not in err and "mlflow" not in err.lower()  # the trackers' chatter stays off the terminal
    log = json.loads((out / "training_log.json").read_text())["steps"]
    losses = {entry["step"]: entry["loss"] for entry in log}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "runs"))
    events.Reload()
    assert {event.step: event.value for event in events.Scalars("train/loss")} == pytest.approx(losses)
    assert [event.step for event in events.Scalars("eval/loss")] == [2, 4, 6]

    offline = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1 and b"train/loss" in offline[0].read_bytes()

    from mlflow.tracking import MlflowClient

    ids = json.loads((out / "trackers.json").read_text())
    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    history = {metric.step: metric.value for metric in client.get_metric_history(ids["mlflow"], "train/loss")}
    assert history == pytest.approx(losses)
    assert client.get_run(ids["mlflow"]).data.params["rank"] == "4"

    # Resume from checkpoint-3: the same MLflow run gets the steps again (same values), TensorBoard's are purged and rewritten.
    resumed = tmp_path / "resumed"
    later = {"checkpoint-6", "checkpoint-8", "adapter_model.safetensors", "adapter_config.json"}
    shutil.copytree(out, resumed, ignore=lambda folder, names: [name for name in names if folder == str(out) and name in later])
    code, stdout, err = run_cli("train", "--output", str(resumed), "--resume", "--json")
    assert code == 0, err
    assert json.loads((resumed / "trackers.json").read_text()) == ids
    runs = sorted((resumed / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and {run.name.rsplit("-", 1)[1] for run in runs} == {ids["wandb"]}  # W&B: the same run id again
    client = MlflowClient(tracking_uri=(resumed / "mlruns").resolve().as_uri())
    history = client.get_metric_history(ids["mlflow"], "train/loss")
    assert sorted({metric.step for metric in history}) == sorted(losses)
    assert all(metric.value == pytest.approx(losses[metric.step]) for metric in history)
    events = EventAccumulator(str(resumed / "runs"))
    events.Reload()
    assert {event.step: event.value for event in events.Scalars("train/loss")} == pytest.approx(losses)


def test_report_to_list_and_missing_package(monkeypatch):
    from lorakit.errors import UsageError
    from lorakit.training import trackers
    from lorakit.training.params import TrainParams

    assert TrainParams(report_to="none").trackers() == []
    assert TrainParams(report_to="TensorBoard, mlflow,mlflow").trackers() == ["tensorboard", "mlflow"]
    from lorakit.training.params import normalise_mapping

    assert TrainParams(**normalise_mapping({"report_to": ["wandb", "mlflow"]}, "c")).trackers() == ["wandb", "mlflow"]
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="--report-to wandb needs the wandb package"):
        trackers.check_available(["wandb"])
