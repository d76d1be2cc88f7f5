"""Fixtures for `lorakit train` tests: small datasets, subprocess runs, reading adapters back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import FACTS


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test machines are small and shared: one thread per process avoids OpenMP spin contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    path = tmp_path / "tiny_facts.json"
    path.write_text(json.dumps(FACTS * 2, indent=1))
    return path
