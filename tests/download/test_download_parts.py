"""The small parts of `lorakit download`: repo ids, file selection, scrubbing, disk space, offline from a record."""

from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path

import pytest
from fake_hub_server import ADAPTER, MODEL

from lorakit.errors import LorakitError, UsageError
from lorakit.hub.hub_errors import scrub
from lorakit.hub.listing import RemoteFile
from lorakit.hub.repo_ref import parse_repo_ref
from lorakit.hub.selection import select_files
from lorakit.store import home


@pytest.mark.parametrize(
    "text, revision, expected",
    [
        ("tloen/alpaca-lora-7b", None, ("tloen/alpaca-lora-7b", "main", False, "tloen_alpaca-lora-7b")),
        ("org/name:v1.0", None, ("org/name", "v1.0", True, "org_name_v1.0")),
        ("org/name", "refs/pr/3", ("org/name", "refs/pr/3", True, "org_name_refs_pr_3")),
        ("https://huggingface.co/org/name/tree/dev", None, ("org/name", "dev", True, "org_name_dev")),
        ("https://hf-mirror.example/org/name", None, ("org/name", "main", False, "org_name")),
        ("gpt2", None, ("gpt2", "main", False, "gpt2")),
    ],
)
def test_parse_repo_ref(text, revision, expected):
    ref = parse_repo_ref(text, revision)
    assert (ref.repo_id, ref.revision, ref.revision_given, ref.folder_name()) == expected


def test_parse_repo_ref_explains_what_is_wrong():
    with pytest.raises(UsageError, match="more than one '/'"):
        parse_repo_ref("a/b/c")
    with pytest.raises(UsageError, match="'--' or '..'"):
        parse_repo_ref("org/a..b")


def F(path, size=10):
    return RemoteFile(path, size)


def test_selection_prefers_safetensors_and_include_overrides():
    files = [F("adapter_config.json"), F("adapter_model.safetensors"), F("adapter_model.bin"), F("training_args.bin"),
             F("tf_model.h5"), F(".gitattributes"), F("lorakit_download.json")]
    chosen = select_files(files)
    assert [f.path for f in chosen.files] == ["adapter_config.json", "adapter_model.safetensors"]
    reasons = dict(chosen.skipped)
    assert "safetensors" in reasons["training_args.bin"] and "another framework" in reasons["tf_model.h5"]
    assert "reserved" in reasons["lorakit_download.json"]
    # Explicit patterns get exactly what they match (the record's name stays reserved).
    assert [f.path for f in select_files(files, include=["*.bin"]).files] == ["adapter_model.bin", "training_args.bin"]
    assert [f.path for f in select_files(files, exclude=["*.json"]).files] == ["adapter_model.safetensors"]
    # Only pickle weights: they are fetched (loading them needs --allow-pickle).
    assert [f.path for f in select_files([F("adapter_config.json"), F("adapter_model.bin")]).files] == ["adapter_config.json", "adapter_model.bin"]


def test_selection_refuses_every_gguf_quantization_at_once():
    files = [F("config.json"), F("m.Q4_K_M.gguf", 4_000), F("m.Q8_0.gguf", 8_000)]
    with pytest.raises(LorakitError, match="2 GGUF files") as caught:
        select_files(files)
    assert "--include" in caught.value.one_line()
    assert [f.path for f in select_files(files, include=["*Q4_K_M.gguf"]).files] == ["m.Q4_K_M.gguf"]


def test_scrub_removes_tokens_in_every_shape():
    token = "hf_abcdefghijklmnopqrstuvwxyz012345"
    text = f"failed with {token}; header Authorization: Bearer {token}; url https://user:{token}@mirror.example/x; other hf_ZZZZZZZZZZZZZZZZZZZZZZZZ"
    cleaned = scrub(text, [token])
    assert token not in cleaned and "hf_ZZZZ" not in cleaned and "user:" not in cleaned
    assert scrub("custom-secret-value here", ["custom-secret-value"]) == "*** here"


def test_not_enough_disk_space_is_caught_before_downloading(hub, run_cli, monkeypatch):
    import shutil

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    code, _, err = run_cli("download", ADAPTER)
    assert code == 1 and "not enough disk space" in err and err.count("\n") == 1
    assert not [r for r in hub.requests if "/resolve/" in r.path]


def test_output_that_is_a_file_is_refused_even_with_force(hub, run_cli, tmp_path):
    target = tmp_path / "file"
    target.write_text("data")
    code, _, err = run_cli("download", ADAPTER, "--output", str(target), "--force")
    assert code == 1 and "is a file, not a folder" in err and target.read_text() == "data"


def test_cleaned_cache_is_named_offline_and_refilled_online(hub, run_cli, monkeypatch, tmp_path):
    import shutil

    assert run_cli("download", ADAPTER)[0] == 0
    shutil.rmtree(tmp_path / "hf-cache")
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run_cli("download", ADAPTER, "--json")
    assert code == 1 and "no longer holds" in err and "unset HF_HUB_OFFLINE" in err and hub.requests == []
    assert err.count("Error:") == 1
    # Online again, the folder (lorakit's own download of that commit) is refilled without --force.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    code, out, err = run_cli("download", ADAPTER, "--json")
    assert code == 0, err
    assert (home.loras_dir() / "lorakit-test_tiny-lora" / "adapter_model.safetensors").read_bytes() == hub.adapter_files["adapter_model.safetensors"]


def test_one_copy_on_disk_links_into_the_cache(hub, run_cli, monkeypatch, tmp_path):
    import os
    import shutil

    size = sum(len(data) for data in hub.model_files.values())
    real_usage = shutil.disk_usage
    Usage = namedtuple("Usage", "total used free")
    # Room for one copy (plus the margin), not two: the download must still go ahead.
    from lorakit.hub.install import DISK_MARGIN

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, size + DISK_MARGIN + 4096))
    code, out, err = run_cli("download", MODEL, "--json")
    assert code == 0, err
    monkeypatch.setattr(shutil, "disk_usage", real_usage)
    target = home.models_dir() / "lorakit-test_tiny-llama"
    snapshot = tmp_path / "hf-cache" / "models--lorakit-test--tiny-llama" / "snapshots" / hub.shas["model"]
    for name in hub.model_files:
        assert (target / name).is_symlink() and Path(os.readlink(target / name)) == snapshot / name
        assert (target / name).read_bytes() == hub.model_files[name]
    assert not (target / "lorakit_download.json").is_symlink()
    assert not (target / "config.json").resolve().stat().st_mode & 0o222  # the cache's copy is read-only
    assert json.loads((target / "lorakit_download.json").read_text())["storage"] == "links into the HF cache"
    assert run_cli("download", MODEL, "--check")[0] == 0

    # A file changed in the cache is caught by --check through the link.
    blob = (target / "config.json").resolve()
    blob.chmod(0o644)
    blob.write_text(blob.read_text().replace("64", "65", 1))
    code, _, err = run_cli("download", MODEL, "--check")
    assert code == 1 and "config.json (changed)" in err


def test_copy_with_a_message_where_links_are_impossible(hub, run_cli, monkeypatch):
    import os

    def no_symlink(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlink)
    code, out, err = run_cli("download", ADAPTER, "--json")
    assert code == 0, err
    assert "symbolic links cannot be made" in err and "copied" in err
    target = home.loras_dir() / "lorakit-test_tiny-lora"
    assert not (target / "adapter_model.safetensors").is_symlink()
    assert (target / "adapter_model.safetensors").read_bytes() == hub.adapter_files["adapter_model.safetensors"]


def test_help_lists_the_flags(run_cli):
    code, out, _ = run_cli("download", "--help")
    assert code == 0
    for flag in ("--revision", "--include", "--exclude", "--output", "--token", "--threads", "--check", "--force", "--json"):
        assert flag in out


def test_dns_failure_and_refused_connection_are_not_retried_but_timeouts_and_429_are(monkeypatch):
    import httpx2

    from lorakit.hub import retry
    from lorakit.hub.hub_errors import is_transient, retry_after

    assert not is_transient(httpx2.ConnectError("[Errno -2] Name or service not known"))
    assert not is_transient(ConnectionRefusedError(111, "Connection refused"))
    assert is_transient(httpx2.ReadTimeout("timed out")) and is_transient(httpx2.ConnectTimeout("timed out"))

    class Response:
        status_code = 429
        headers = {"Retry-After": "7"}

    class RateLimited(Exception):
        response = Response()

    assert retry_after(RateLimited()) == 7.0
    waits, calls = [], []
    monkeypatch.setattr(retry, "is_transient", lambda error: True)

    def action():
        calls.append(1)
        if len(calls) < 3:
            raise RateLimited()
        return "done"

    class Clock:
        def wait(self, delay):
            waits.append(delay)
            return False

    monkeypatch.setattr(retry.threading, "Event", Clock)
    assert retry.call_with_retries(action) == "done" and waits == [7.0, 7.0]

    def refused():
        calls.append(1)
        raise httpx2.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(retry, "is_transient", is_transient)
    calls.clear()
    with pytest.raises(httpx2.ConnectError):
        retry.call_with_retries(refused)
    assert len(calls) == 1
