"""`lorakit upload` against the hub stand-in: the real huggingface_hub client's create_repo/branch/commit calls."""

from __future__ import annotations

import json
import shutil

from fake_hub_server import MODEL

from lorakit.store import home

REPO = "lorakit-test/uploaded-lora"


def _adapter(tmp_adapter, name="facts"):
    folder = home.loras_dir() / name
    shutil.copytree(tmp_adapter, folder)
    return folder


def _files(hub, repo_id, ref="main"):
    repo = hub.repos[repo_id]
    return {path: f.data for path, f in repo.commits[repo.refs[ref]].items()}


def test_upload_with_card_then_download_and_generate(hub, run_cli, tiny_adapter_dir, monkeypatch):
    folder = _adapter(tiny_adapter_dir)
    (folder / "training_parameters.json").write_text(json.dumps({"dataset": "yahma/alpaca-cleaned", "rank": 4, "alpha": 8, "learning_rate": 3e-4, "epochs": 2}))
    (folder / "training_log.json").write_text(json.dumps({"summary": {}, "steps": [{"step": 1, "loss": 3.2}, {"step": 2, "loss": 1.5, "eval_loss": 1.7}]}))
    (folder / "adapter_model.bin").write_bytes(b"pickle that must never leave the machine")
    monkeypatch.setenv("HF_TOKEN", hub.token)
    from lorakit.evaluation import records

    digest = records.adapter_hash(folder)[:16]
    records.log_append([{"date": "2026-12-01 10:00", "configuration": "facts", "adapter_hash": digest, "dataset": "/data/test.jsonl",
                         "perplexity": "12.345600", "tokens": 321},
                        {"date": "2026-12-01 10:00", "configuration": "other", "adapter_hash": "0" * 16, "dataset": "/x", "perplexity": "99"}])

    code, out, err = run_cli("upload", "facts", REPO, "--private", "--base-model", MODEL, "--json")
    assert code == 0, err
    assert hub.token not in out + err
    report = json.loads(out)
    files = _files(hub, REPO)
    assert report["commit"] == hub.repos[REPO].refs["main"] and hub.repos[REPO].private
    assert files["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").read_bytes()
    assert "adapter_model.bin" not in files and "adapter_model.bin" not in report["files"]
    config = json.loads(files["adapter_config.json"])
    assert config["base_model_name_or_path"] == MODEL
    card = files["README.md"].decode()
    assert card.startswith("---\n") and f'base_model: "{MODEL}"' in card and "library_name: peft" in card
    assert hub.card_metadata[-1]["base_model"] == MODEL and hub.card_metadata[-1]["datasets"] == ["yahma/alpaca-cleaned"]
    assert 'datasets: ["yahma/alpaca-cleaned"]' in card and "| 2 | 1.5000 | 1.7000 |" in card
    assert "| 2026-12-01 10:00 | test.jsonl | facts | 12.345600 | 321 |" in card and "99" not in card.split("## Evaluation")[1].split("##")[0]
    assert f"lorakit generate {MODEL} --lora {REPO}" in card and "PeftModel.from_pretrained" in card and "llama-cli" in card
    # The safetensors went through the LFS endpoints, the small files inline.
    assert any(r.path == "/lorakit-test/uploaded-lora.git/info/lfs/objects/batch" for r in hub.requests)
    assert any(r.method == "PUT" and r.path.startswith("/lfs-upload/") for r in hub.requests)

    # What was published comes back through the hub id and generates like the local folder.
    code, out, err = run_cli("generate", MODEL, "--lora", REPO, "--prompt", "hi", "--greedy", "--max-new-tokens", "4", "--json", "--template", "raw")
    assert code == 0, err
    local = run_cli("generate", MODEL, "--lora", str(folder), "--prompt", "hi", "--greedy", "--max-new-tokens", "4", "--json", "--template", "raw")
    assert json.loads(out)["output"] == json.loads(local[1])["output"]


def test_upload_to_a_branch_and_again(hub, run_cli, tiny_adapter_dir, monkeypatch):
    _adapter(tiny_adapter_dir)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    repo = "lorakit-test/branchy-lora"
    assert run_cli("upload", "facts", repo, "--base-model", f"{MODEL}:main")[0] == 0
    code, _, err = run_cli("upload", "facts", repo, "--revision", "v2", "--base-model", MODEL, "--message", "second")
    assert code == 0, err
    assert "v2" in hub.repos[repo].refs and "README.md" in _files(hub, repo, "v2")
    assert hub.commit_messages[-1] == "second" and f"--lora {repo}:v2" in err


def test_local_base_needs_base_model_and_token_is_needed_and_hidden(hub, run_cli, tiny_adapter_dir, monkeypatch):
    _adapter(tiny_adapter_dir)  # its config records the tiny model's local path
    code, _, err = run_cli("upload", "facts", REPO)
    assert code == 2 and "--base-model" in err and "local path" in err
    assert not [r for r in hub.requests if r.method == "POST"]

    code, _, err = run_cli("upload", "facts", REPO, "--base-model", MODEL)
    assert code == 1 and "token" in err and "HF_TOKEN" in err

    wrong = "hf_wrongTokenValue0123456789abcdefXYZ"
    code, out, err = run_cli("upload", "facts", REPO, "--base-model", MODEL, "--token", wrong)
    assert code == 1 and wrong not in out + err and err.count("Error:") == 1


def test_base_recorded_from_a_downloaded_model(hub, run_cli, tiny_model_dir, make_adapter, tmp_path, monkeypatch):
    assert run_cli("download", MODEL)[0] == 0
    base = home.models_dir() / "lorakit-test_tiny-llama"
    make_adapter(base, home.loras_dir() / "on-hub-base")
    monkeypatch.setenv("HF_TOKEN", hub.token)
    code, out, err = run_cli("upload", "on-hub-base", REPO + "-2", "--json")
    assert code == 0, err
    config = json.loads(_files(hub, REPO + "-2")["adapter_config.json"])
    assert config["base_model_name_or_path"] == MODEL and config["revision"] == hub.shas["model"]


def test_pickle_only_adapter_is_refused(hub, run_cli, tmp_path):
    folder = home.loras_dir() / "old"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.bin").write_bytes(b"x")
    code, _, err = run_cli("upload", "old", REPO, "--base-model", MODEL)
    assert code == 1 and "safetensors only" in err and "lorakit convert old --allow-pickle" in err


TRAIN_ARGS = ("--precision", "fp32", "--dropout", "0", "--learning-rate", "5e-3", "--warmup-steps", "0", "--rank", "4", "--alpha", "8",
              "--epochs", "1", "--batch-size", "2", "--micro-batch-size", "2", "--cutoff-len", "64")


def test_training_on_a_hub_base_records_its_id_and_writes_a_card(hub, run_cli, tmp_path, monkeypatch):
    rows = [{"instruction": f"Say {word}.", "input": "", "output": f"{word}!"} for word in ("hello", "world", "fox", "dog")]
    dataset = tmp_path / "rows.json"
    dataset.write_text(json.dumps(rows))
    code, out, err = run_cli("train", MODEL, "--name", "hubbed", "--dataset", str(dataset), *TRAIN_ARGS)
    assert code == 0, err
    folder = home.loras_dir() / "hubbed"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == MODEL and config["revision"] == hub.shas["model"]
    card = (folder / "README.md").read_text()
    assert f'base_model: "{MODEL}"' in card and "| learning_rate | 0.005 |" in card and "## Loss" in card

    # The recorded hub id is enough to publish it: no --base-model needed.
    monkeypatch.setenv("HF_TOKEN", hub.token)
    code, out, err = run_cli("upload", "hubbed", "lorakit-test/hubbed-lora", "--json")
    assert code == 0, err
    assert json.loads(out)["base_revision"] == hub.shas["model"]


def test_subprocess_upload_never_prints_the_token_even_when_debugging(hub, tiny_adapter_dir):
    import os
    import subprocess
    import sys

    _adapter(tiny_adapter_dir)
    env = {**os.environ, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([sys.executable, "-m", "lorakit", "upload", "facts", "lorakit-test/sub-lora", "--base-model", MODEL, "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["repo_id"] == "lorakit-test/sub-lora" and hub.token not in done.stdout + done.stderr
    # A refused token, with the traceback switched on, still never shows.
    wrong = "hf_refusedTokenValue0123456789abcdefXYZ"
    env = {**env, "HF_TOKEN": wrong, "LORAKIT_DEBUG": "1"}
    done = subprocess.run([sys.executable, "-m", "lorakit", "upload", "facts", "lorakit-test/sub-lora-2", "--base-model", MODEL],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and wrong not in done.stdout + done.stderr


def test_copy_from_a_hub_adapter(hub, run_cli, tiny_adapter_dir, tmp_path):
    from fake_hub_server import read_folder

    files = {**read_folder(tiny_adapter_dir), "training_parameters.json": json.dumps({"name": "theirs", "rank": 4, "alpha": 8, "learning_rate": 0.002}).encode()}
    hub.add_commit("lorakit-test/with-params", files)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi!"}] * 2))
    code, out, err = run_cli("train", MODEL, "--dataset", str(rows), "--name", "mine", "--copy-from", "lorakit-test/with-params", "--dry-run")
    assert code == 0, err
    assert (home.loras_dir() / "lorakit-test_with-params" / "training_parameters.json").is_file()
