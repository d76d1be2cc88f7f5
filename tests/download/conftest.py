"""A hub stand-in on 127.0.0.1 serving real PEFT adapters and a tiny model; each test gets its own HF cache."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from fake_hub_server import (
    ADAPTER,
    EMPTY,
    GATED,
    MODEL,
    PRIVATE,
    HubServer,
    read_folder,
)


def _empty_safetensors() -> bytes:
    from safetensors.numpy import save

    return save({})


@pytest.fixture(scope="session")
def hub(tiny_adapter_dir, tiny_adapter2_dir, tiny_model_dir):
    server = HubServer().start()
    adapter = read_folder(tiny_adapter_dir)
    # The hub often has a pickle copy beside the safetensors one, and git plumbing: neither should be fetched.
    server.shas = {}
    server.shas["main"] = server.add_commit(ADAPTER, {**adapter, "adapter_model.bin": b"\x80\x02 not really a pickle", ".gitattributes": b"*.safetensors filter=lfs\n"})
    server.shas["v1"] = server.add_commit(ADAPTER, read_folder(tiny_adapter2_dir), ref="v1")
    server.shas["model"] = server.add_commit(MODEL, {**read_folder(tiny_model_dir), "pytorch_model.bin": b"\x80\x02 pickle stand-in" * 64})
    server.add_commit(PRIVATE, adapter, private=True)
    server.add_commit(GATED, adapter, gated=True)
    server.add_commit(EMPTY, {"adapter_config.json": adapter["adapter_config.json"], "adapter_model.safetensors": _empty_safetensors()})
    server.adapter_files = adapter
    server.adapter2_files = read_folder(tiny_adapter2_dir)
    server.model_files = read_folder(tiny_model_dir)
    yield server
    server.stop()


def _guard_network(monkeypatch) -> None:
    """Tests talk to 127.0.0.1 only: any other address fails loudly instead of reaching the internet."""
    original = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise ConnectionRefusedError(f"test tried to reach {host}")
        return original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(autouse=True)
def hub_env(hub, tmp_path, monkeypatch):
    """Online mode against the stand-in, a fresh HF cache, no token, fast retries."""
    import huggingface_hub.constants as hf_constants

    from lorakit.hub import retry

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    # huggingface_hub read these at import: no stored login, and no registry fetch from its default endpoint.
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    # Uploads go through the hub's LFS endpoints, which the stand-in speaks (Xet storage it does not).
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(retry, "BASE_DELAY", 0.01)
    _guard_network(monkeypatch)
    hub.clear_faults()
    hub.requests.clear()
    yield
    hub.clear_faults()
