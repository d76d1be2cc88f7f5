"""lorakit's benchmarks: each one measures lorakit against the reference way of doing the same job.

Run them with ``python -m benchmarks run [NAME ...] [--quick] [--json OUT]``; the shared measuring
tools (interleaving, statistics, records, peak RSS) are in :mod:`benchmarks.harness`. This package
imports nothing heavy: torch is imported only inside a benchmark's ``run``.
"""

from __future__ import annotations

import ast
from pathlib import Path

BENCHMARKS = ("train", "train_memory", "generate", "apply", "merge", "eval", "serve", "cli")
"""Discovered by name: benchmark NAME is the module ``benchmarks/NAME_bench.py``."""


def module_path(name: str) -> Path:
    return Path(__file__).resolve().parent / f"{name}_bench.py"


def describe(name: str) -> tuple[str, str]:
    """(first line, full text) of a benchmark's docstring, read without importing the module."""
    path = module_path(name)
    if not path.is_file():
        return f"(benchmarks/{name}_bench.py is missing)", ""
    try:
        text = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except SyntaxError as error:
        return f"(benchmarks/{name}_bench.py does not parse: {error.msg})", ""
    first = text.strip().splitlines()[0] if text.strip() else "(no docstring)"
    return first, text
