"""Adapters coming and going, clients going away, SIGTERM with requests in flight."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from serve_helpers import chat, open_tiny_runtime, start_app, wait_idle


def test_load_and_unload_at_runtime(served, serve_loras):
    shutil.copytree(serve_loras / "a", serve_loras / "folder-c")
    try:
        client = served.client()
        loaded = httpx.post(served.url + "/v1/load_lora_adapter", json={"lora_name": "c", "lora_path": "folder-c"}, timeout=30)
        assert loaded.status_code == 200, loaded.text
        assert "c" in {m.id for m in client.models.list().data}
        assert chat(client, "c") == chat(client, "a")  # same weights, same text
        again = httpx.post(served.url + "/v1/load_lora_adapter", json={"lora_name": "c", "lora_path": "folder-c"}, timeout=30)
        assert again.status_code == 400
        gone = httpx.post(served.url + "/v1/unload_lora_adapter", json={"lora_name": "c"}, timeout=30)
        assert gone.status_code == 200 and "c" not in served.runtime.pool.loaded
        with pytest.raises(openai.NotFoundError):
            chat(client, "c")
    finally:
        shutil.rmtree(serve_loras / "folder-c")


def test_least_recently_used_adapter_is_evicted(tiny_model_dir, serve_loras):
    runtime = open_tiny_runtime(tiny_model_dir, serve_loras, max_loaded_loras=1)
    running = start_app(runtime)
    try:
        client = running.client()
        first = chat(client, "a")
        chat(client, "b")
        assert list(runtime.pool.loaded) == ["b"] and set(runtime.engine.rows.adapters) == {"b"}
        assert chat(client, "a") == first  # loaded again on demand
        assert list(runtime.pool.loaded) == ["a"]
    finally:
        running.stop()
        runtime.close()


def test_client_disconnect_mid_stream_frees_its_sequence(served):
    engine = served.runtime.engine
    body = {"model": "b", "prompt": "hello", "max_tokens": 400, "temperature": 0, "stream": True}
    with httpx.stream("POST", served.url + "/v1/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        next(lines)
        assert engine.busy() == 1
    assert wait_idle(engine, 15), "the sequence of a client that left is still running"
    assert served.runtime.pool.loaded["b"].holders == 0
    assert chat(served.client(), "b", max_tokens=2)


def _start_cli(args, env):
    process = subprocess.Popen([sys.executable, "-c", "from lorakit.cli import main; main()", "serve", *args],
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return process, match.group(1), lines
    process.kill()
    raise AssertionError("no ready line: " + "".join(lines))


def test_cli_serves_and_sigterm_with_requests_in_flight_exits_0(tiny_model_dir, serve_loras, lorakit_home):
    shutil.copytree(serve_loras / "a", lorakit_home / "loras" / "a")
    env = {**os.environ, "LORAKIT_API_KEY": "k3y-not-in-logs"}
    process, url, lines = _start_cli([str(tiny_model_dir), "--port", "0", "--lora", "a:0.5"], env)
    results = {}

    def long_stream():
        client = openai.OpenAI(base_url=url + "/v1", api_key="k3y-not-in-logs", max_retries=0)
        try:
            stream = client.completions.create(model="a", prompt="hello", max_tokens=60, temperature=0, stream=True)
            results["finish"] = [c.choices[0].finish_reason for c in stream if c.choices][-1]
        except Exception as error:  # noqa: BLE001 - reported below
            results["error"] = repr(error)

    worker = threading.Thread(target=long_stream)
    worker.start()
    time.sleep(1.0)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    worker.join(60)
    code = process.wait(30)
    rest = process.stderr.read()
    assert code == 0, rest
    assert time.monotonic() - started < 40
    assert results.get("finish") == "length", results  # finished within the grace period
    text = "".join(lines) + rest
    assert "k3y-not-in-logs" not in text and "Traceback" not in text
    assert "POST /v1/completions 200 model=a" in text
