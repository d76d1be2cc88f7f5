"""`torchrun --nproc_per_node=2` trains with no code change (gloo on CPU); both ranks end with
identical weights, and the same as one process training on the same global batches."""

from __future__ import annotations

import json
import sys

from train_helpers import TINY_ARGS, assert_same_adapter, run_group, subprocess_env

ARGS = ("--batch-size", "8", "--micro-batch-size", "2", "--epochs", "2", "--dropout", "0")


def test_two_ranks_end_with_identical_weights(run_cli, tiny_model_dir, tiny_dataset, tmp_path, lorakit_home):
    ddp_out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lorakit", "train",
               str(tiny_model_dir), "--dataset", str(tiny_dataset), "--output", str(ddp_out), *TINY_ARGS, *ARGS]
    done = run_group(command, subprocess_env(lorakit_home), timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((ddp_out / "training_log.json").read_text())["summary"]
    assert summary["world_size"] == 2
    fingerprints = summary["rank_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert "x 2 processes" in done.stderr

    single_out = tmp_path / "single"
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--output", str(single_out), *TINY_ARGS, *ARGS)
    assert code == 0, err
    assert_same_adapter(ddp_out, single_out, atol=1e-5)
