"""Every error status the API promises, as OpenAI error objects; the server survives them all."""

from __future__ import annotations

import shutil

import httpx
import openai
import pytest
from serve_helpers import chat, start_app, wait_idle


def _post(served, path, body, **headers):
    return httpx.post(served.url + path, json=body, headers=headers, timeout=30)


def _error(response, status):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_unknown_model_is_404_with_param_model(served):
    with pytest.raises(openai.NotFoundError) as caught:
        chat(served.client(), "no-such-adapter")
    assert caught.value.body["param"] == "model" and "no-such-adapter" in caught.value.body["message"]
    assert _error(_post(served, "/v1/chat/completions", {"model": "a+nope", "messages": [{"role": "user", "content": "x"}]}), 404)["param"] == "model"


@pytest.mark.parametrize("field, value, param", [
    ("temperature", 3, "temperature"), ("top_p", 0, "top_p"), ("max_tokens", 0, "max_tokens"), ("max_tokens", 10**6, "max_tokens"),
    ("n", 2, "n"), ("stop", [1], "stop"), ("messages", [], "messages"), ("model", "a:+b", "model"), ("model", "a+a", "model"),
    ("seed", "x", "seed"), ("stream", "yes", "stream"), ("logprobs", True, "logprobs"), ("frequency_penalty", 9, "frequency_penalty"),
    ("repetition_penalty", 0, "repetition_penalty"), ("min_tokens", -1, "min_tokens"), ("ignore_eos", "no", "ignore_eos"),
])
def test_bad_parameter_is_400_naming_it(served, field, value, param):
    body = {"model": "a", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, field: value}
    assert _error(_post(served, "/v1/chat/completions", body), 400)["param"] == param


def test_bad_bodies(served):
    raw = httpx.post(served.url + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}, timeout=30)
    _error(raw, 400)
    _error(_post(served, "/v1/completions", ["a list"]), 400)
    _error(_post(served, "/v1/completions", {"model": "a", "prompt": 5}), 400)
    big = httpx.post(served.url + "/v1/completions", content=b"x" * (2 << 20), timeout=30)
    _error(big, 413)
    _error(httpx.get(served.url + "/v1/nothing-here", timeout=30), 404)


def test_api_key_missing_or_wrong_is_401_and_never_logged(served):
    keyed = start_app(served.runtime, api_key="s3cret-key")
    try:
        with pytest.raises(openai.AuthenticationError):
            keyed.client("wrong").models.list()
        _error(httpx.get(keyed.url + "/v1/models", timeout=30), 401)
        assert [m.id for m in keyed.client("s3cret-key").models.list().data]
        assert chat(keyed.client("s3cret-key"), "a", max_tokens=2)
        assert httpx.get(keyed.url + "/health", timeout=30).status_code == 200
        assert keyed.log and not any("s3cret" in line for line in keyed.log)
    finally:
        keyed.stop()


def test_queue_full_is_429_with_retry_after(served):
    engine = served.runtime.engine
    saved = engine.max_batch, engine.max_queue
    engine.max_batch, engine.max_queue = 1, 0
    try:
        body = {"model": "a", "prompt": "hello", "max_tokens": 400, "temperature": 0, "stream": True}
        with httpx.stream("POST", served.url + "/v1/completions", json=body, timeout=30) as running:
            lines = running.iter_lines()  # keep the iterator: dropping it closes the stream
            next(lines)  # the first sequence holds the only row
            refused = _post(served, "/v1/completions", {"model": "a", "prompt": "x", "max_tokens": 2})
            _error(refused, 429)
            assert refused.headers["retry-after"] == "1"
    finally:
        engine.max_batch, engine.max_queue = saved
    assert wait_idle(engine)


def test_adapter_that_does_not_fit_is_400_with_the_preflight_reason(served, serve_loras, tmp_path, make_adapter):
    from lorakit_testing import build_tiny_model

    other_base = build_tiny_model(tmp_path / "wide", hidden_size=96, num_attention_heads=4)
    make_adapter(other_base, serve_loras / "wrong-base")
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            chat(served.client(), "wrong-base")
        assert "does not fit" in caught.value.body["message"] or "hidden_size" in caught.value.body["message"]
        loaded = _post(served, "/v1/load_lora_adapter", {"lora_name": "w2", "lora_path": "wrong-base"})
        assert "wrong-base" in _error(loaded, 400)["message"]
        assert chat(served.client(), "a", max_tokens=2)  # still serving
    finally:
        shutil.rmtree(serve_loras / "wrong-base")


def test_runtime_loading_refuses_paths_outside_the_loras_folder(served, tiny_adapter_dir):
    assert _error(_post(served, "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(tiny_adapter_dir)}), 400)["param"] == "lora_path"
    assert _error(_post(served, "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "../../etc"}), 400)["param"] == "lora_path"
    hub = _post(served, "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "someorg/not-downloaded"})
    assert "someorg/not-downloaded" in _error(hub, 404)["message"]  # offline here: the download store says why
    _error(_post(served, "/v1/load_lora_adapter", {"lora_name": "x:1", "lora_path": "a"}), 400)
    _error(_post(served, "/v1/load_lora_adapter", {"lora_path": "a"}), 400)
    _error(_post(served, "/v1/unload_lora_adapter", {"lora_name": "never-loaded"}), 404)
