"""Fixtures of the bad-input table: the case workspace and a hub stand-in for download cases."""

from __future__ import annotations

import pytest
from bad_input_table import Workspace


@pytest.fixture
def workspace(tmp_path, lorakit_home, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir) -> Workspace:
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    ws = Workspace(case_dir, lorakit_home, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir)
    ws.prepare()
    return ws


@pytest.fixture(scope="session")
def _bad_input_hub_server(tiny_adapter_dir):
    from fake_hub_server import ADAPTER, EMPTY, PRIVATE, HubServer, read_folder
    from safetensors.numpy import save

    server = HubServer().start()
    adapter = read_folder(tiny_adapter_dir)
    server.add_commit(ADAPTER, adapter)
    server.add_commit(PRIVATE, adapter, private=True)
    server.add_commit(EMPTY, {"adapter_config.json": adapter["adapter_config.json"], "adapter_model.safetensors": save({})})
    yield server
    server.stop()


@pytest.fixture
def bad_input_hub(_bad_input_hub_server, tmp_path, monkeypatch):
    """Online mode against the loopback stand-in with a fresh HF cache outside the watched folders."""
    import huggingface_hub.constants as hf_constants

    from lorakit.hub import retry

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", _bad_input_hub_server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(retry, "BASE_DELAY", 0.01)
    return _bad_input_hub_server
