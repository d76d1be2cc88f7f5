"""``lorakit chat`` end to end on the real SmolLM2-135M-Instruct, in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_two_turns_then_a_lora_as_generate_gives_it(smollm2_dir, lorakit_home, run_cli, make_adapter, tmp_path):
    lora = make_adapter(smollm2_dir, tmp_path / "smol-lora", scale=0.02)
    question = "What is the capital of France?"
    saved, with_lora = tmp_path / "two.json", tmp_path / "lora.json"
    script = "\n".join([question, "And what is the capital of Italy?", f"/save {saved}", "/reset", f"/lora add {lora}", question,
                        f"/save {with_lora}"]) + "\n"
    env = {**os.environ, "LORAKIT_HOME": str(lorakit_home), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "lorakit", "chat", "--greedy", "--max-new-tokens", "24", "--no-history"],
                            input=script, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    first, second = [m["content"] for m in json.loads(saved.read_text())["messages"] if m["role"] == "assistant"]
    assert "Paris" in first and "Rome" in second
    assert "Loading" not in result.stdout and first in result.stdout  # stdout: the streamed replies only

    code, out, err = run_cli("generate", "--prompt", question, "--greedy", "--max-new-tokens", "24", "--json", "--lora", str(lora))
    assert code == 0, err
    assert [m["content"] for m in json.loads(with_lora.read_text())["messages"] if m["role"] == "assistant"] == [json.loads(out)["output"]]
