"""End to end on the real SmolLM2-135M: `lorakit serve` in its own process, the official client, the oracle."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import chat
from test_serve_lifecycle import _start_cli

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def smollm2_loras(smollm2_dir, tmp_path_factory):
    from lorakit_testing import make_peft_adapter

    folder = tmp_path_factory.mktemp("smollm2-loras")
    return {name: make_peft_adapter(smollm2_dir, folder / name, seed=seed, r=8, alpha=16, targets=targets, scale=0.02)
            for name, seed, targets in (("s1", 1, ("q_proj", "v_proj")), ("s2", 2, ("k_proj", "o_proj", "down_proj")))}


def test_smollm2_server_equals_generate_alone_and_together(smollm2_dir, smollm2_loras, lorakit_home, run_cli):
    import shutil

    import openai

    for name, path in smollm2_loras.items():
        shutil.copytree(path, lorakit_home / "loras" / name)
    cases = {smollm2_dir.name: [], "s1": ["s1"], "s1:0.5+s2:0.5": ["s1:0.5", "s2:0.5"]}
    expected = {}
    for model, loras in cases.items():
        args = ["generate", str(smollm2_dir), "--prompt", QUESTION, "--greedy", "--repetition-penalty", "1",
                "--max-new-tokens", "16", "--json"]
        for lora in loras:
            args += ["--lora", str(lorakit_home / "loras" / lora.split(":")[0]) + (":" + lora.split(":")[1] if ":" in lora else "")]
        code, out, err = run_cli(*args)
        assert code == 0, err
        expected[model] = json.loads(out)["output"]
    assert "Paris" in expected[smollm2_dir.name]

    process, url, _ = _start_cli([str(smollm2_dir), "--port", "0"], {**os.environ})
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        alone = {model: chat(client, model, QUESTION, 16) for model in cases}
        assert alone == expected
        jobs = list(cases) * 2
        with ThreadPoolExecutor(len(jobs)) as pool:
            together = list(pool.map(lambda model: chat(client, model, QUESTION, 16), jobs))
        assert together == [expected[model] for model in jobs]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
