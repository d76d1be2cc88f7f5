"""True resume: a run killed with SIGKILL (or stopped with Ctrl-C) and resumed ends with the same
adapter as an uninterrupted run with the same seed (fp32, dropout on, so the RNG matters too)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from train_helpers import FACTS, assert_same_adapter, lorakit_cmd, subprocess_env

from lorakit.cli import main

# 16 examples, 2 per step -> 8 steps per epoch; 30 epochs = 240 steps, a checkpoint every 5.
RUN_ARGS = ("--precision", "fp32", "--dropout", "0.1", "--learning-rate", "2e-3", "--warmup-steps", "4", "--rank", "4",
            "--alpha", "8", "--micro-batch-size", "1", "--batch-size", "2", "--epochs", "30", "--scheduler", "cosine")


def _start(home, name, model, dataset, *extra):
    args = ["train", str(model), "--dataset", str(dataset), "--name", name, *RUN_ARGS, *extra]
    return subprocess.Popen(lorakit_cmd(*args), env=subprocess_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(predicate, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    return False


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    """The uninterrupted run, trained once in-process for the whole module."""
    folder = tmp_path_factory.mktemp("reference")
    dataset = folder / "tiny_facts.json"
    dataset.write_text(json.dumps(FACTS * 2, indent=1))
    out = folder / "uninterrupted"
    main(["train", str(tiny_model_dir), "--dataset", str(dataset), "--output", str(out), *RUN_ARGS, "--save-steps", "5"])
    return out


def test_sigkill_then_resume_matches_uninterrupted_run(reference, run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    from lorakit.training.checkpoint import complete_checkpoints

    folder = lorakit_home / "loras" / "killed"
    process = _start(lorakit_home, "killed", tiny_model_dir, tiny_dataset, "--save-steps", "5")
    reached = _wait_for(lambda: any(step >= 40 for step, _ in complete_checkpoints(folder)), process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert reached, "the run ended before it could be killed"
    assert not (folder / "adapter_model.safetensors").exists(), "the run finished before the kill"
    newest = complete_checkpoints(folder)[-1][0]
    assert newest < 240

    # A checkpoint folder without its trainer_state.json (as a kill mid-write could leave) is never used.
    fake = folder / "checkpoint-239"
    fake.mkdir()
    (fake / "adapter_model.safetensors").write_bytes(b"not a checkpoint")

    code, _, err = run_cli("train", "--name", "killed", "--resume")
    assert code == 0, err
    assert f"Resuming from checkpoint-{newest} " in err
    assert_same_adapter(folder, reference, atol=1e-5)
    log = json.loads((folder / "training_log.json").read_text())
    assert [entry["step"] for entry in log["steps"]] == list(range(1, 241))


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_identically(reference, run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    folder = lorakit_home / "loras" / "stopped"
    process = _start(lorakit_home, "stopped", tiny_model_dir, tiny_dataset)  # no --save-steps: only Ctrl-C saves
    lines = []
    started = _wait_for(lambda: bool(lines.append(process.stderr.readline()) or any(line.startswith("step ") for line in lines)), process)
    assert started, "".join(lines)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted at step" in err and "--resume" in err
    from lorakit.training.checkpoint import complete_checkpoints

    saved = complete_checkpoints(folder)
    assert len(saved) == 1 and saved[0][0] < 240

    code, _, err = run_cli("train", "--name", "stopped", "--resume")
    assert code == 0, err
    assert_same_adapter(folder, reference, atol=1e-5)


def test_resume_refuses_a_changed_rank(reference, run_cli):
    before = {path.name: path.stat().st_mtime_ns for path in reference.iterdir()}
    code, _, err = run_cli("train", "--output", str(reference), "--resume", "--rank", "8")
    assert code == 2
    assert err.count("\n") == 1 and "different rank" in err and "--overwrite" in err
    code, _, err = run_cli("train", "--output", str(reference), "--resume", "--target-modules", "q_proj,k_proj")
    assert code == 2 and "different target modules" in err
    code, _, err = run_cli("train", "--output", str(reference), "--resume", "--experts", "skip")
    assert code == 2 and "different experts (auto in its checkpoints, skip now)" in err
    assert {path.name: path.stat().st_mtime_ns for path in reference.iterdir()} == before
