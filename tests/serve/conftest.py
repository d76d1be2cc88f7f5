"""One tiny-model server per test module, with adapters ``a`` and ``b`` servable from its loras folder."""

from __future__ import annotations

import shutil

import pytest
from serve_helpers import open_tiny_runtime, start_app


@pytest.fixture(scope="module")
def serve_loras(tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, tmp_path_factory):
    loras = tmp_path_factory.mktemp("serve-home") / "loras"
    loras.mkdir()
    shutil.copytree(tiny_adapter_dir, loras / "a")
    shutil.copytree(tiny_adapter2_dir, loras / "b")
    return loras


@pytest.fixture(scope="module")
def served(tiny_model_dir, serve_loras):
    runtime = open_tiny_runtime(tiny_model_dir, serve_loras)
    running = start_app(runtime)
    yield running
    running.stop()
    runtime.close()
