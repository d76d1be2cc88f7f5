"""End to end on the real SmolLM2-135M-Instruct, as a user runs it (real subprocesses)."""

import json
import os
import subprocess

import pytest

pytestmark = pytest.mark.slow


def _run(home, *args):
    env = {**os.environ, "LORAKIT_HOME": str(home)}
    return subprocess.run(["lorakit", *args], capture_output=True, text=True, env=env, timeout=600)


def test_default_model_answers_paris(smollm2_dir, lorakit_home):
    # The autouse home links the cached conversion, so "no MODEL" means the embedded default.
    result = _run(lorakit_home, "generate", "--prompt", "What is the capital of France?", "--greedy", "--max-new-tokens", "20")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "Loading" not in result.stdout  # stdout carries only the generated text


def test_gguf_path_reuses_the_converted_folder(smollm2_dir, lorakit_home):
    from lorakit.store.models import embedded_gguf

    result = _run(lorakit_home, "generate", str(embedded_gguf()), "--prompt", "What is the capital of France?", "--greedy", "--max-new-tokens", "12", "--json")
    assert result.returncode == 0, result.stderr
    assert "Paris" in json.loads(result.stdout)["output"]
    assert "Converting" not in result.stderr


def test_apply_a_peft_adapter_on_smollm2(smollm2_dir, tmp_path, run_cli):
    from lorakit_testing import make_peft_adapter

    adapter = make_peft_adapter(smollm2_dir, tmp_path / "smol-lora", r=4, alpha=8, scale=0.05)
    code, out, err = run_cli("apply", str(smollm2_dir), "--lora", f"{adapter}:0.5", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["loader"] == "transformers" and record["effects"][0]["changes_output"]
