"""Hub ids wherever MODEL or --lora is taken: fetched once through the download store, then used offline."""

from __future__ import annotations

import json
import time

import pytest
from fake_hub_server import ADAPTER, MODEL

from lorakit.store import home


def _generate(run_cli, model, *loras):
    args = ["generate", model]
    for lora in loras:
        args += ["--lora", lora]
    code, out, err = run_cli(*args, "--prompt", "hello", "--greedy", "--max-new-tokens", "5", "--json", "--template", "raw")
    assert code == 0, err
    record = json.loads(out)
    return record["output"], err


def test_generate_with_hub_ids_equals_local_folders(hub, run_cli, tiny_model_dir, tiny_adapter_dir, monkeypatch):
    text, err = _generate(run_cli, MODEL, ADAPTER)
    assert "fetching it from" in err
    assert (home.models_dir() / "lorakit-test_tiny-llama" / "config.json").is_file()
    assert (home.loras_dir() / "lorakit-test_tiny-lora" / "adapter_config.json").is_file()
    assert text == _generate(run_cli, str(tiny_model_dir), str(tiny_adapter_dir))[0]

    # Once fetched, the same ids work with the hub gone.
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again, err = _generate(run_cli, MODEL, ADAPTER)
    assert again == text and hub.requests == [] and "fetching" not in err


def test_lora_revision_and_weight(hub, run_cli):
    from lorakit.hub.resolve import resolve_lora
    from lorakit.store.lora_spec import parse_lora

    assert parse_lora(f"{ADAPTER}:v1").name == f"{ADAPTER}:v1"
    spec = parse_lora(f"{ADAPTER}:v1:0.5")
    assert (spec.name, spec.weight) == (f"{ADAPTER}:v1", 0.5)
    folder = resolve_lora(spec.name, quiet=True)
    assert folder == home.loras_dir() / "lorakit-test_tiny-lora_v1"
    assert (folder / "adapter_model.safetensors").read_bytes() == hub.adapter2_files["adapter_model.safetensors"]


def test_wrong_kind_is_refused_before_fetching(hub, run_cli):
    code, _, err = run_cli("generate", ADAPTER, "--prompt", "x")
    assert code == 1 and "is not a model" in err and "--lora" in err
    assert not [r for r in hub.requests if "/resolve/" in r.path]


def test_offline_names_cached_alternatives_and_download(hub, run_cli, monkeypatch):
    assert run_cli("download", ADAPTER)[0] == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli("generate", MODEL, "--prompt", "x")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and lines[-1].startswith("Error:")
    assert "HF_HUB_OFFLINE=1" in err and f"lorakit download {MODEL}" in err and "cached models" in err
    code, _, err = run_cli("generate", "--lora", "lorakit-test/other-lora", "--prompt", "x")
    assert code == 1 and "lorakit-test_tiny-lora" in err and "lorakit download lorakit-test/other-lora" in err


def test_unreachable_hub_is_one_line_at_once(hub, run_cli, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    code, _, err = run_cli("generate", MODEL, "--prompt", "x")
    assert code == 1 and time.monotonic() - started < 10
    assert "cannot be reached" in err and f"lorakit download {MODEL}" in err and "retrying" not in err
    assert err.count("Error:") == 1 and "Traceback" not in err

    code, _, err = run_cli("download", MODEL)
    assert code == 1 and "cannot reach" in err and "retrying" not in err


@pytest.mark.parametrize("text", ["./org/name", "/abs/org/name", "org/name/extra", "plain", "https://x/org/name", "org/na me"])
def test_things_that_are_not_hub_ids(text):
    from lorakit.hub.resolve import hub_ref

    assert hub_ref(text) is None
