"""`lorakit download` end to end: the real huggingface_hub client, over HTTP, against the hub stand-in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fake_hub_server import ADAPTER, EMPTY, GATED, MODEL, PRIVATE

from lorakit.store import home


def resolve_gets(hub, path=None):
    return [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path and (path is None or r.path.endswith("/" + path))]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_full_adapter_download(hub, run_cli, tmp_path):
    code, out, err = run_cli("download", ADAPTER, "--json")
    assert code == 0, err
    target = home.loras_dir() / "lorakit-test_tiny-lora"
    files = folder_bytes(target)
    record = json.loads(files.pop("lorakit_download.json"))
    # Same bytes as the PEFT adapter; the pickle copy and git plumbing were not fetched.
    assert files == hub.adapter_files
    assert not resolve_gets(hub, "adapter_model.bin") and not resolve_gets(hub, ".gitattributes")
    assert record["repo_id"] == ADAPTER and record["commit"] == hub.shas["main"] and record["kind"] == "adapter"
    for entry in record["files"]:
        assert entry["sha256"] == hashlib.sha256(hub.adapter_files[entry["path"]]).hexdigest()
        assert entry["size"] == len(hub.adapter_files[entry["path"]]) and entry["verified_against_hub"]
    assert {s["path"] for s in record["skipped"]} == {"adapter_model.bin", ".gitattributes"}
    # Nothing half-written or temporary is left beside the target.
    assert sorted(p.name for p in home.loras_dir().iterdir()) == ["lorakit-test_tiny-lora"]
    # The files went through the standard HF cache, with the branch recorded for offline use.
    storage = tmp_path / "hf-cache" / "models--lorakit-test--tiny-lora"
    assert (storage / "refs" / "main").read_text() == hub.shas["main"]
    assert (storage / "snapshots" / hub.shas["main"] / "adapter_model.safetensors").is_file()

    data = json.loads(out)
    assert data["status"] == "downloaded" and data["path"] == str(target) and data["commit"] == hub.shas["main"]
    assert {f["path"] for f in data["files"]} == set(hub.adapter_files)
    assert "--lora lorakit-test_tiny-lora" in data["next_command"] and "Next: lorakit generate" in err

    from lorakit.store.adapters import read_adapter

    assert read_adapter(target).rank == 4

    # A second run finds the same verified files and downloads nothing.
    hub.requests.clear()
    code, out, err = run_cli("download", ADAPTER)
    assert code == 0 and "already in" in err
    assert not resolve_gets(hub)


def test_model_download_prefers_safetensors(hub, run_cli):
    code, out, err = run_cli("download", MODEL)
    assert code == 0, err
    target = home.models_dir() / "lorakit-test_tiny-llama"
    files = folder_bytes(target)
    files.pop("lorakit_download.json")
    assert files == hub.model_files and "pytorch_model.bin" not in files
    assert "lorakit generate lorakit-test_tiny-llama --prompt" in err

    from lorakit.store.models import resolve_model

    assert resolve_model(MODEL) == target


def test_include_and_exclude(hub, run_cli, tmp_path):
    code, _, err = run_cli("download", MODEL, "--include", "*.json", "--exclude", "tokenizer*", "--output", str(tmp_path / "only-json"))
    assert code == 0, err
    names = set(folder_bytes(tmp_path / "only-json")) - {"lorakit_download.json"}
    assert names == {p for p in hub.model_files if p.endswith(".json") and not p.startswith("tokenizer")}
    code, _, err = run_cli("download", MODEL, "--include", "*.gguf", "--output", str(tmp_path / "none"))
    assert code == 1 and "nothing to download" in err and "config.json" in err


def test_resume_after_cut_transfer(hub, run_cli, monkeypatch):
    import huggingface_hub.constants as hf_constants

    # The library writes what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MB); smaller chunks let a
    # cut in this small file show up as a resume from the last chunk written rather than a restart.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    size = len(hub.model_files["model.safetensors"])
    assert size > 400_000
    hub.cut("model.safetensors", after_bytes=300_000)
    code, _, err = run_cli("download", MODEL)
    assert code == 0, err
    gets = resolve_gets(hub, "model.safetensors")
    assert [g.range for g in gets] == [None, f"bytes={4 * 64 * 1024}-"]
    assert gets[0].body_bytes == 300_000 and gets[1].status == 206
    assert sum(g.body_bytes for g in gets) < size + 300_000
    target = home.models_dir() / "lorakit-test_tiny-llama"
    assert (target / "model.safetensors").read_bytes() == hub.model_files["model.safetensors"]


def test_failed_run_keeps_finished_files_for_the_next_run(hub, run_cli, tmp_path):
    hub.fail("model.safetensors", status=503, times=100)
    code, out, err = run_cli("download", MODEL, "--threads", "1")
    assert code == 1 and out == ""
    assert err.count("Error:") == 1 and "HTTP 503" in err and "model.safetensors" in err
    assert not (home.models_dir() / "lorakit-test_tiny-llama").exists()
    assert not [p for p in home.models_dir().iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert len(resolve_gets(hub, "model.safetensors")) == 4  # the first try and three retries
    snapshot = tmp_path / "hf-cache" / "models--lorakit-test--tiny-llama" / "snapshots" / hub.shas["model"]
    finished = {p.name for p in snapshot.iterdir()}
    assert {"config.json", "generation_config.json"} <= finished and "model.safetensors" not in finished

    hub.clear_faults()
    hub.requests.clear()
    code, _, err = run_cli("download", MODEL)
    assert code == 0, err
    fetched_now = {r.path.rsplit("/", 1)[1] for r in resolve_gets(hub)}
    assert "model.safetensors" in fetched_now and not (fetched_now & finished)


def test_transient_error_is_retried(hub, run_cli):
    hub.fail("adapter_model.safetensors", status=503, times=2)
    code, _, err = run_cli("download", ADAPTER)
    assert code == 0, err
    assert len(resolve_gets(hub, "adapter_model.safetensors")) == 3
    assert "retrying" in err


def test_corrupted_file_is_caught(hub, run_cli, tmp_path):
    hub.corrupt("adapter_model.safetensors")
    code, out, err = run_cli("download", ADAPTER)
    assert code == 1
    assert "adapter_model.safetensors failed its checksum" in err and "sha256" in err
    assert len(resolve_gets(hub, "adapter_model.safetensors")) == 2  # fetched once more before giving up
    assert not (home.loras_dir() / "lorakit-test_tiny-lora").exists()
    # The bad copy is gone from the cache, so the next run fetches the file again.
    pointer = tmp_path / "hf-cache" / "models--lorakit-test--tiny-lora" / "snapshots" / hub.shas["main"] / "adapter_model.safetensors"
    assert not pointer.exists()
    hub.clear_faults()
    code, _, err = run_cli("download", ADAPTER)
    assert code == 0, err
    assert (home.loras_dir() / "lorakit-test_tiny-lora" / "adapter_model.safetensors").read_bytes() == hub.adapter_files["adapter_model.safetensors"]


def test_revision_pin(hub, run_cli):
    code, out, err = run_cli("download", f"{ADAPTER}:v1", "--json")
    assert code == 0, err
    target = home.loras_dir() / "lorakit-test_tiny-lora_v1"
    files = folder_bytes(target)
    record = json.loads(files.pop("lorakit_download.json"))
    assert files == hub.adapter2_files
    assert record["revision"] == "v1" and record["commit"] == hub.shas["v1"]
    assert json.loads(out)["commit"] == hub.shas["v1"]

    commit = hub.shas["main"]
    hub.requests.clear()
    code, _, err = run_cli("download", ADAPTER, "--revision", commit)
    assert code == 0, err
    pinned = home.loras_dir() / f"lorakit-test_tiny-lora_{commit}"
    assert (pinned / "adapter_model.safetensors").read_bytes() == hub.adapter_files["adapter_model.safetensors"]
    assert all(f"/resolve/{commit}/" in r.path for r in resolve_gets(hub))

    code, _, err = run_cli("download", f"{ADAPTER}:v1", "--revision", "main")
    assert code == 2 and "two revisions" in err


def test_check_names_changed_and_missing_files(hub, run_cli):
    assert run_cli("download", ADAPTER)[0] == 0
    code, out, err = run_cli("download", ADAPTER, "--check")
    assert code == 0 and "OK: all 3 files" in err

    target = home.loras_dir() / "lorakit-test_tiny-lora"
    weights = target / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.resolve().chmod(0o644)  # the cached file behind the link is read-only
    weights.write_bytes(bytes(data))
    (target / "README.md").unlink()
    hub.requests.clear()
    code, out, err = run_cli("download", ADAPTER, "--check", "--json")
    assert code == 1
    assert "adapter_model.safetensors (changed)" in err and "README.md (missing)" in err and err.count("Error:") == 1
    report = json.loads(out)
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert report["ok"] is False and statuses == {"adapter_config.json": "ok", "adapter_model.safetensors": "changed", "README.md": "missing"}
    assert hub.requests == []  # --check needs no network


def test_existing_folder_with_other_content_is_refused_unless_forced(hub, run_cli, tmp_path):
    out_dir = tmp_path / "mine"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("keep me")
    code, _, err = run_cli("download", ADAPTER, "--output", str(out_dir))
    assert code == 1 and "already exists" in err and "--force" in err
    assert folder_bytes(out_dir) == {"notes.txt": b"keep me"} and not resolve_gets(hub)

    code, _, err = run_cli("download", ADAPTER, "--output", str(out_dir), "--force")
    assert code == 0, err
    assert "notes.txt" not in folder_bytes(out_dir) and (out_dir / "lorakit_download.json").is_file()

    # Another commit of the same repository is "different content" too, and names the commits.
    code, _, err = run_cli("download", f"{ADAPTER}:v1", "--output", str(out_dir))
    assert code == 1 and "commit" in err and hub.shas["main"][:12] in err
    assert json.loads((out_dir / "lorakit_download.json").read_text())["commit"] == hub.shas["main"]


def test_malformed_repo_ids(hub, run_cli):
    for bad in ["", "org/", "/name", "a/b/c", "org/na me", "org/-name", "org/na--me", "org/name:"]:
        code, out, err = run_cli("download", bad)
        assert code == 2, (bad, err)
        assert err.startswith("Error: ") and err.count("\n") == 1 and out == ""
    assert hub.requests == []


def test_repository_and_revision_not_found(hub, run_cli):
    code, _, err = run_cli("download", "lorakit-test/no-such-repo")
    assert code == 1 and "repository lorakit-test/no-such-repo not found" in err and "Traceback" not in err
    code, _, err = run_cli("download", f"{ADAPTER}:no-such-branch")
    assert code == 1 and "revision 'no-such-branch' not found in lorakit-test/tiny-lora" in err


def test_private_and_gated_need_a_token_that_is_never_shown(hub, run_cli, monkeypatch, tmp_path):
    code, out, err = run_cli("download", PRIVATE)
    assert code == 1 and "not found" in err and "HF_TOKEN" in err
    code, out, err = run_cli("download", GATED)
    assert code == 1 and "gated" in err and "--token" in err

    wrong = "hf_wrongTokenWrongToken1234567890"
    code, out, err = run_cli("download", GATED, "--token", wrong)
    assert code == 1 and "not been granted access" in err
    assert wrong not in out + err

    hub.requests.clear()
    code, out, err = run_cli("download", PRIVATE, "--token", hub.token, "--json")
    assert code == 0, err
    target = home.loras_dir() / "lorakit-test_private-lora"
    assert hub.token not in out + err
    assert hub.token not in (target / "lorakit_download.json").read_text()
    assert all(r.authorized for r in hub.requests if "/resolve/" in r.path or "/api/models/" in r.path)

    monkeypatch.setenv("HF_TOKEN", hub.token)
    code, out, err = run_cli("download", GATED, "--output", str(tmp_path / "gated"))
    assert code == 0, err
    assert hub.token not in out + err


def test_unwritable_output_fails_before_downloading(hub, run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = run_cli("download", ADAPTER, "--output", str(blocker / "sub" / "lora"))
    assert code == 1 and err.count("\n") == 1 and "a file is in the way" in err
    assert not resolve_gets(hub) and blocker.read_text() == "x"


def test_permission_denied_output_fails_before_downloading(hub, run_cli, tmp_path, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root ignores folder permissions: make the probe fail as it would for a user
        import tempfile

        def refuse(*args, dir=None, **kwargs):
            raise PermissionError(13, "Permission denied", str(dir))

        monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    code, _, err = run_cli("download", ADAPTER, "--output", str(locked / "lora"))
    assert code == 1 and "permission denied" in err and str(locked) in err and not resolve_gets(hub)


def test_offline_mode_uses_only_the_cache(hub, run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli("download", ADAPTER)
    assert code == 1 and "HF_HUB_OFFLINE=1" in err and "not in the Hugging Face cache" in err
    assert hub.requests == []

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert run_cli("download", ADAPTER)[0] == 0
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run_cli("download", ADAPTER, "--output", str(tmp_path / "copy"), "--json")
    assert code == 0, err
    assert hub.requests == []
    assert folder_bytes(tmp_path / "copy").keys() - {"lorakit_download.json"} == hub.adapter_files.keys()
    assert json.loads(out)["commit"] == hub.shas["main"]

    # Without lorakit's kept listing (the files came from another tool), the cached snapshot is used as it is,
    # each LFS file still checked against its blob name (the sha256).
    import shutil

    shutil.rmtree(home.cache_dir() / "hub-listings")
    code, out, err = run_cli("download", ADAPTER, "--output", str(tmp_path / "copy2"), "--json")
    assert code == 0, err
    assert "full file list is unknown offline" in err and hub.requests == []
    record = json.loads((tmp_path / "copy2" / "lorakit_download.json").read_text())
    assert {f["path"]: f["verified_against_hub"] for f in record["files"]} == {p: True for p in hub.adapter_files}

    # A branch never fetched is a clear error, not a network attempt.
    code, _, err = run_cli("download", f"{ADAPTER}:v1")
    assert code == 1 and "no cached revision 'v1'" in err and hub.requests == []


def test_empty_adapter_is_rejected_and_not_installed(hub, run_cli):
    code, _, err = run_cli("download", EMPTY)
    assert code == 1 and "not usable" in err and "no tensors" in err
    assert not list(home.loras_dir().iterdir())


def test_cli_subprocess_with_token_from_environment(hub, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "lorakit", "download", PRIVATE, "--json", "--threads", "2"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "adapter" and Path(data["path"]).name == "lorakit-test_private-lora"
    assert hub.token not in result.stdout + result.stderr
