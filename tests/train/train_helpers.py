"""Helpers for `lorakit train` tests (imported as a module; conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def subprocess_env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(LORAKIT_HOME=str(home), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.pop("LORAKIT_DEBUG", None)
    return env


def lorakit_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "lorakit", *map(str, args)]


def run_lorakit(home: Path, *args, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(lorakit_cmd(*args), env=subprocess_env(home), capture_output=True, text=True, timeout=timeout)


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
