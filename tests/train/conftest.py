"""Fixtures for `lorakit train` tests: small datasets, subprocess runs, reading adapters back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


@pytest.fixture(autouse=True)
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
