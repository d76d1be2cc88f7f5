"""`--shard fsdp2` under `torchrun --nproc_per_node=2` (gloo on CPU): the base is sharded, the result is
the single-process result, each rank needs less memory than one process holding the whole base, and a
sharded run killed with SIGKILL resumes to the same adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from train_helpers import TINY_ARGS, assert_same_adapter, run_group, subprocess_env

from lorakit_testing import build_tiny_model

TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lorakit", "train")
# micro batch 2 x accumulation 2 x 2 ranks = the single process's 2 x 4: the same 8 examples per step.
ARGS = ("--batch-size", "8", "--micro-batch-size", "2", "--json")
SHORT_ROW = "The quick brown fox jumps over the lazy dog. Paris is the capital of France."


def _summary(folder):
    return json.loads((folder / "training_log.json").read_text())["summary"]


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory):
    """A random Llama of 100M parameters (400 MB fp32) in 32 narrow layers: the weights, not the Python
    stack, decide a process's memory, and one gathered layer (12 MB) is small next to the half base a
    rank no longer holds."""
    return build_tiny_model(tmp_path_factory.mktemp("deep") / "deep-llama", hidden_size=512, intermediate_size=1536,
                            num_hidden_layers=32, num_attention_heads=8, num_key_value_heads=4)


def test_sharded_run_equals_single_process_with_less_memory_per_rank(wide_model_dir, tmp_path, lorakit_home):
    rows = [{"instruction": f"Tell story {i}.", "input": "", "output": SHORT_ROW} for i in range(7)]  # 7: the last step is uneven
    dataset = tmp_path / "long.json"
    dataset.write_text(json.dumps(rows))
    common = (str(wide_model_dir), "--dataset", str(dataset), *TINY_ARGS, *ARGS, "--epochs", "1",
              "--eval-dataset", str(dataset), "--eval-steps", "1")
    env = subprocess_env(lorakit_home)

    sharded = run_group([*TORCHRUN, *common, "--output", str(tmp_path / "sharded"), "--shard", "fsdp2"], env, timeout=150)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert "Base sharded with FSDP2 over 2 ranks" in sharded.stderr
    single = run_group([sys.executable, "-m", "lorakit", "train", *common, "--output", str(tmp_path / "single")], env, timeout=150)
    assert single.returncode == 0, single.stderr[-3000:]

    assert_same_adapter(tmp_path / "sharded", tmp_path / "single", atol=1e-5)
    shard_summary, single_summary = _summary(tmp_path / "sharded"), _summary(tmp_path / "single")
    assert shard_summary["shard"] == "fsdp2" and shard_summary["world_size"] == 2
    assert shard_summary["eval_loss"] == pytest.approx(single_summary["eval_loss"], abs=1e-5)
    single_peak = single_summary["rank_peak_memory"][0]["rss_mb"]
    rank_peaks = [rank["rss_mb"] for rank in shard_summary["rank_peak_memory"]]
    assert len(rank_peaks) == 2 and max(rank_peaks) < single_peak, (rank_peaks, single_peak)


def test_sharded_run_killed_then_resumed_sharded_matches_uninterrupted(run_cli, tiny_model_dir, tiny_dataset, tmp_path, lorakit_home):
    from lorakit.training.checkpoint import complete_checkpoints

    # 16 examples, 8 per step: 2 steps per epoch, 30 epochs = 60 steps, a checkpoint every 2.
    common = (str(tiny_model_dir), "--dataset", str(tiny_dataset), *TINY_ARGS, *ARGS, "--epochs", "30", "--save-steps", "2")
    killed = tmp_path / "killed"
    process = subprocess.Popen([*TORCHRUN, *common, "--output", str(killed), "--shard", "fsdp2"], env=subprocess_env(lorakit_home),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not any(step >= 4 for step, _ in complete_checkpoints(killed)):
        time.sleep(0.02)
    _kill_tree(process.pid)  # both ranks and torchrun, with no chance to save anything
    _, err = process.communicate(timeout=30)
    assert not (killed / "adapter_model.safetensors").exists(), f"the run finished before the kill: {err[-2000:]}"
    newest = complete_checkpoints(killed)[-1][0]
    assert 4 <= newest < 60

    resumed = run_group([*TORCHRUN, *common, "--output", str(killed), "--shard", "fsdp2", "--resume"], subprocess_env(lorakit_home), timeout=150)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from checkpoint-{newest} " in resumed.stderr

    single = tmp_path / "single"
    code, _, err = run_cli("train", *common, "--output", str(single))
    assert code == 0, err
    assert_same_adapter(killed, single, atol=1e-5)
    assert [entry["step"] for entry in json.loads((killed / "training_log.json").read_text())["steps"]] == list(range(1, 61))


def test_sharded_run_with_checkpointing_split_and_load_best_equals_single_process(tiny_model_dir, tmp_path, lorakit_home):
    """--gradient-checkpointing, --val-set-size and --load-best under --shard fsdp2 give the single
    process's adapter, held-out split and best step."""
    rows = [{"instruction": f"Tell story {i}.", "input": "", "output": SHORT_ROW + f" Story {i}."} for i in range(20)]
    dataset = tmp_path / "rows.json"
    dataset.write_text(json.dumps(rows))
    common = (str(tiny_model_dir), "--dataset", str(dataset), *TINY_ARGS, *ARGS, "--epochs", "2", "--gradient-checkpointing",
              "--val-set-size", "4", "--eval-steps", "1", "--save-steps", "1", "--load-best")
    env = subprocess_env(lorakit_home)
    sharded = run_group([*TORCHRUN, *common, "--output", str(tmp_path / "sharded"), "--shard", "fsdp2"], env, timeout=150)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    single = run_group([sys.executable, "-m", "lorakit", "train", *common, "--output", str(tmp_path / "single")], env, timeout=150)
    assert single.returncode == 0, single.stderr[-3000:]
    shard_summary, single_summary = _summary(tmp_path / "sharded"), _summary(tmp_path / "single")
    assert shard_summary["gradient_checkpointing"] is True and shard_summary["shard"] == "fsdp2"
    assert shard_summary["held_out_examples"] == single_summary["held_out_examples"] == 4
    assert shard_summary["best_step"] == single_summary["best_step"] is not None
    assert shard_summary["best_eval_loss"] == pytest.approx(single_summary["best_eval_loss"], abs=1e-5)
    assert "Kept the best evaluation" in sharded.stderr
    assert_same_adapter(tmp_path / "sharded", tmp_path / "single", atol=1e-5)


def test_sharded_ranks_refuse_a_base_with_nan_together(tiny_model_dir, tiny_dataset, tmp_path, lorakit_home):
    """Each rank checks only its own shards; the rank that holds the NaN names it and no rank hangs."""
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "nan-model"
    shutil.copytree(tiny_model_dir, broken)
    state = load_file(str(broken / "model.safetensors"))
    key = next(k for k in sorted(state) if "layers.1.mlp.down_proj.weight" in k)
    state[key][-1, -1] = float("nan")  # the last row: in rank 1's shard
    save_file(state, str(broken / "model.safetensors"), metadata={"format": "pt"})
    done = run_group([*TORCHRUN, str(broken), "--dataset", str(tiny_dataset), *TINY_ARGS, *ARGS, "--epochs", "1", "--shard", "fsdp2",
                      "--output", str(tmp_path / "out")], subprocess_env(lorakit_home), timeout=150)
    assert done.returncode != 0
    assert "model.layers.1.mlp.down_proj.weight holds NaN or Inf" in done.stderr
    assert not (tmp_path / "out").exists()


def test_shard_refuses_what_cannot_shard_before_loading(run_cli, tiny_model_dir, tiny_dataset, tmp_path):
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--output", str(tmp_path / "x"), "--shard", "zero3")
    assert code != 0 and "unknown --shard 'zero3'" in err and "fsdp2" in err
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--output", str(tmp_path / "y"),
                           "--shard", "fsdp2", "--load-in-8bit")
    assert code != 0 and "cannot shard an 8-bit base" in err
    if not _cuda():
        code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--output", str(tmp_path / "z"),
                               "--shard", "fsdp2", "--load-in-4bit", "--cpu")
        assert code != 0 and "needs a CUDA GPU" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_shard_in_a_single_process_says_there_is_nothing_to_shard(run_cli, tiny_model_dir, tiny_dataset, tmp_path):
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--output", str(tmp_path / "one"),
                           *TINY_ARGS, "--epochs", "1", "--shard", "fsdp2")
    assert code == 0, err
    assert "a single process has nothing to shard" in err
    assert _summary(tmp_path / "one")["shard"] == "none"


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts each rank in a session of its own,
    so killing its process group would leave the ranks running)."""
    def descendants(parent: int) -> list[int]:
        try:
            children = [int(child) for child in open(f"/proc/{parent}/task/{parent}/children").read().split()]
        except OSError:
            return []
        return [grandchild for child in children for grandchild in [child, *descendants(child)]]

    for victim in [*descendants(pid), pid]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda() or __import__("torch").cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_sharded_4bit_base_on_two_gpus(tiny_model_dir, tiny_dataset, tmp_path, lorakit_home):
    """FSDP-QLoRA: a 4-bit NF4 base (bf16 quant storage) sharded over 2 GPUs trains and saves an adapter."""
    out = tmp_path / "qlora"
    done = run_group([*TORCHRUN, str(tiny_model_dir), "--dataset", str(tiny_dataset), *ARGS, "--epochs", "1", "--load-in-4bit",
                      "--shard", "fsdp2", "--output", str(out)], subprocess_env(lorakit_home), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _summary(out)["shard"] == "fsdp2" and (out / "adapter_model.safetensors").is_file()
