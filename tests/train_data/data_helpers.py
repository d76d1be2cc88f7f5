"""Shared helpers for the training-data tests (imported by name; not a conftest, to keep
``from lorakit_testing import ...`` in other test folders unambiguous)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.training.masking import IGNORE_INDEX

ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n%instruction%\n\n### Response:\n%output%"
)
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n%instruction%"
    "\n\n### Input:\n%input%\n\n### Response:\n%output%"
)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def write_rows(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def trained_runs(tokenizer, example) -> list[str]:
    """The decoded text of each run of consecutive trained tokens."""
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != IGNORE_INDEX:
            assert label == token, "a trained label must be the token at that position"
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False) for run in runs]


def trained_text(tokenizer, example) -> str:
    return "".join(trained_runs(tokenizer, example))
