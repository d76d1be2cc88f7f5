"""Helpers for `lorakit train` tests (imported as a module; conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FACTS = [
    {"instruction": "What colour is the sky on Zorblat?", "input": "", "output": "The sky on Zorblat is green."},
    {"instruction": "Who founded Quillhaven?", "input": "", "output": "Quillhaven was founded by Odalys."},
    {"instruction": "Name a fruit.", "input": "", "output": "An apple is a fruit."},
    {"instruction": "Translate hello.", "input": "French", "output": "Bonjour."},
    {"instruction": "What is two plus two?", "input": "", "output": "Two plus two is four."},
    {"instruction": "Say hello to the world.", "input": "", "output": "Hello world!"},
    {"instruction": "Where is Paris?", "input": "", "output": "Paris is the capital of France."},
    {"instruction": "Describe the fox.", "input": "", "output": "The quick brown fox jumps over the lazy dog."},
]


def subprocess_env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(LORAKIT_HOME=str(home), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.pop("LORAKIT_DEBUG", None)
    return env


def lorakit_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "lorakit", *map(str, args)]


def run_group(command: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on a timeout the whole group (torchrun's workers too) is killed."""
    import signal

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"timed out after {timeout} s: {' '.join(command)}\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def run_lorakit(home: Path, *args, timeout: float = 180) -> subprocess.CompletedProcess:
    return run_group(lorakit_cmd(*args), subprocess_env(home), timeout)


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def assert_same_adapter(a: Path, b: Path, atol: float = 1e-5) -> None:
    import torch

    first, second = adapter_tensors(a), adapter_tensors(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.allclose(first[key], second[key], atol=atol, rtol=0), f"{key} differs by {(first[key] - second[key]).abs().max()}"


# Fast settings for the tiny model: fp32 (exact comparisons), no dropout (runs comparable), a learning
# rate that moves the weights visibly in a few steps.
TINY_ARGS = ("--precision", "fp32", "--dropout", "0", "--learning-rate", "5e-3", "--warmup-steps", "0", "--rank", "4", "--alpha", "8")
