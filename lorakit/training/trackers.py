"""Experiment trackers for ``--report-to``: TensorBoard, Weights & Biases, MLflow (all optional extras).

Each tracker gets the same scalars the training log holds (loss, learning rate, tokens/s, grad norm,
eval loss) at the optimizer step they belong to, and the run's parameters once. Only rank 0 reports.

Where they write, without any account or server unless the user set one up:
- tensorboard: ``OUTPUT/runs`` (event files).
- wandb: ``OUTPUT/wandb``; the project is ``$WANDB_PROJECT`` or ``lorakit``; ``WANDB_MODE=offline``
  keeps everything local (what the tests use).
- mlflow: ``$MLFLOW_TRACKING_URI`` when set, else a file store in ``OUTPUT/mlruns`` (the experiment
  is ``$MLFLOW_EXPERIMENT_NAME`` or ``lorakit``).

A resumed run continues the same record: TensorBoard purges events from the resumed step on (a
killed run may have logged steps past its last checkpoint), MLflow reopens the run whose id is kept
in ``OUTPUT/trackers.json``, W&B resumes the run of the same id (``resume="allow"``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from lorakit.errors import UsageError

IDS_FILE = "trackers.json"
SCALARS = ("loss", "learning_rate", "tokens_per_s", "grad_norm", "eval_loss")
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow-skinny")}


def check_available(trackers: list[str]) -> None:
    """Refuse a tracker whose package is missing, before anything loads (the extra to install is named)."""
    for name in trackers:
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"--report-to {name} needs the {package} package",
                             f"pip install 'lorakit[{name}]' (or {package}), or leave {name} out of --report-to")


def _metric_name(key: str) -> str:
    return "eval/loss" if key == "eval_loss" else f"train/{key}"


class _Ids:
    """Tracker run ids kept next to the checkpoints, so --resume reports into the same run."""

    def __init__(self, output: Path):
        self.path = Path(output) / IDS_FILE
        try:
            self.values = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except ValueError:
            self.values = {}

    def get(self, key: str) -> str | None:
        value = self.values.get(key)
        return str(value) if value else None

    def put(self, key: str, value: str) -> None:
        from lorakit.store.atomic import atomic_write_text

        self.values[key] = value
        atomic_write_text(self.path, json.dumps(self.values, indent=1) + "\n")


class _TensorBoard:
    def __init__(self, output: Path, start_step: int, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run logged past the checkpoint it resumes from.
        self.writer = SummaryWriter(log_dir=str(Path(output) / "runs"), purge_step=start_step + 1 if start_step else None)
        self.writer.add_text("parameters", "```\n" + json.dumps(config, indent=1, default=str) + "\n```", 0)

    def log(self, entry: dict) -> None:
        for key in SCALARS:
            if key in entry:
                self.writer.add_scalar(_metric_name(key), entry[key], entry["step"])

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, output: Path, name: str, config: dict, ids: _Ids):
        import uuid

        # Settings(silent=True) reaches wandb's terminal logger only at init; its integration hints
        # ("Detected [openai] in use") print before that unless the environment says silent.
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        run_id = ids.get("wandb") or uuid.uuid4().hex[:8]
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "lorakit"), name=name, id=run_id, resume="allow", dir=str(output),
            config=config, settings=wandb.Settings(silent=True, console="off"),
        )
        ids.put("wandb", run_id)

    def log(self, entry: dict) -> None:
        values = {_metric_name(key): entry[key] for key in SCALARS if key in entry}
        self.run.log({**values, "train/epoch": entry.get("epoch", 0.0)}, step=entry["step"])

    def close(self) -> None:
        self.run.finish()


class _Mlflow:
    def __init__(self, output: Path, name: str, config: dict, ids: _Ids):
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # mlflow 3 keeps its file store only behind this opt-in; it needs no database package.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (Path(output).resolve() / "mlruns").as_uri()
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        run_id = ids.get("mlflow")
        if run_id is None:
            experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "lorakit")
            experiment = self.client.get_experiment_by_name(experiment_name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
            run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
            for key, value in config.items():
                self.client.log_param(run_id, key, str(value)[:500])  # mlflow caps parameter values
            ids.put("mlflow", run_id)
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def log(self, entry: dict) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_metric_name(key), float(entry[key]), now, int(entry["step"])) for key in SCALARS if key in entry]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class MetricsSink:
    """Every chosen tracker behind one ``log(entry)`` / ``close()``; a no-op off rank 0 or with none."""

    def __init__(self, trackers: list[str], output: Path, enabled: bool, name: str | None = None,
                 config: dict | None = None, start_step: int = 0):
        self.sinks = []
        if not enabled or not trackers:
            return
        check_available(trackers)
        config, name = dict(config or {}), name or Path(output).name
        ids = _Ids(output)
        try:
            for tracker in trackers:
                if tracker == "tensorboard":
                    self.sinks.append(_TensorBoard(output, start_step, config))
                elif tracker == "wandb":
                    self.sinks.append(_Wandb(output, name, config, ids))
                elif tracker == "mlflow":
                    self.sinks.append(_Mlflow(output, name, config, ids))
        except Exception:
            self.close()
            raise

    def log(self, entry: dict) -> None:
        for sink in self.sinks:
            sink.log(entry)

    def close(self) -> None:
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close()
