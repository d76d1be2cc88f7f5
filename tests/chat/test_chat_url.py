"""``lorakit chat --url`` against a real HTTP server on loopback (FastAPI + uvicorn, streamed SSE)."""

from __future__ import annotations

import json

import pytest
from openai_sse_server import OpenAIStub


@pytest.fixture
def stub():
    server = OpenAIStub().start()
    yield server
    server.stop()


@pytest.fixture
def keyed_stub():
    server = OpenAIStub(api_key="sk-test-SECRET-42").start()
    yield server
    server.stop()


def _chat(run_cli, url, script, *extra, env=None):
    return run_cli("chat", "--url", url, "--no-history", *extra, input="\n".join(script) + "\n", env=env)


def test_lora_commands_become_the_model_field_and_replies_stream(run_cli, stub, tmp_path):
    saved = tmp_path / "c.json"
    script = ["hi", "/lora add b:0.3", "/system Be kind.", "more", "/weight a 1", "/lora remove b", "last", "/lora remove a",
              "/lora add b", "/lora", "bare", "/lora remove b", "base again", f"/save {saved}"]
    code, out, err = _chat(run_cli, stub.url, script, "--lora", "a:0.7", "--greedy", "--max-new-tokens", "12")
    assert code == 0, err
    # a name without a weight is sent bare: the server's default weight for it (and what vLLM accepts)
    assert [body["model"] for body in stub.bodies] == ["a:0.7", "a:0.7+b:0.3", "a:1", "b", "tiny-base"]
    assert "in use: b (default weight)" in err
    assert "model=a:0.7 system= turns=1 last=hi" in out  # streamed deltas joined, on stdout
    assert "model=a:0.7+b:0.3 system=Be kind. turns=4 last=more" in out  # history and system sent
    body = stub.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0 and body["max_tokens"] == 12
    assert "repetition_penalty" not in body and "top_k" not in body  # OpenAI semantics: no penalty unless asked
    assert "requests now ask for model 'a:0.7+b:0.3'" in err
    assert "(5 tokens," in err and "stopped at stop)" in err  # usage.completion_tokens, the server's finish_reason
    record = json.loads(saved.read_text())
    assert [m["role"] for m in record["messages"]] == ["system"] + ["user", "assistant"] * 5
    assert record["messages"][-1]["content"] == "model=tiny-base system=Be kind. turns=10 last=base again"


def test_sampling_flags_given_on_purpose_are_sent(run_cli, stub):
    code, out, err = _chat(run_cli, stub.url, ["hi"], "tiny-base", "--temperature", "0.5", "--top-p", "0.8", "--seed", "7",
                           "--repetition-penalty", "1.3", "--top-k", "5")
    assert code == 0, err
    body = stub.bodies[0]
    assert (body["temperature"], body["top_p"], body["seed"], body["repetition_penalty"], body["top_k"]) == (0.5, 0.8, 7, 1.3, 5)


def test_server_errors_are_one_line_and_the_chat_goes_on(run_cli, stub):
    code, out, err = _chat(run_cli, stub.url, ["/lora add ghost", "hi", "/lora remove ghost", "hi"])
    assert code == 0, err
    assert "error: the server answered 404: The model `ghost` does not exist" in err
    assert out.count("model=tiny-base") == 1 and "turns=1" in out  # the failed turn was not kept


def test_api_key_from_the_environment_is_sent_and_never_printed(run_cli, keyed_stub):
    key = keyed_stub.api_key
    code, out, err = _chat(run_cli, keyed_stub.url, ["hi"], env={"LORAKIT_API_KEY": key})
    assert code == 0, err
    assert "model=tiny-base" in out and key not in out + err
    code, out, err = _chat(run_cli, keyed_stub.url, ["hi"], "--api-key", "sk-wrong-SECRET")
    assert code == 1
    assert "refused the API key (401)" in err and "SECRET" not in out + err
    code, out, err = _chat(run_cli, keyed_stub.url + "/v1/", ["hi"], env={"LORAKIT_API_KEY": key})  # a /v1 URL works too
    assert code == 0 and "model=tiny-base" in out


def test_a_password_in_the_url_is_never_printed(run_cli, stub):
    code, out, err = _chat(run_cli, stub.url.replace("http://", "http://me:pw-SECRET@"), ["hi"])
    assert code == 0 and "SECRET" not in out + err and f"at {stub.url}/v1;" in err


def test_a_server_that_is_not_openai_compatible_is_named(run_cli, tmp_path):
    """A plain HTTP server (no /v1/models list): one line, no traceback."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>hello</html>" if self.path.startswith("/v1/models") else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, out, err = _chat(run_cli, f"http://127.0.0.1:{server.server_address[1]}", ["hi"])
        assert code == 1 and "Traceback" not in err
        assert "did not answer an OpenAI model list; is --url an OpenAI-compatible server?" in err
    finally:
        server.shutdown()


def test_chat_with_a_server_imports_no_torch(stub, tmp_path):
    """A client needs no model stack: ``chat --url`` starts in a moment on a machine without torch's weight."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    script = ("import sys\nfrom lorakit.cli import main\ntry:\n    main(['chat', '--url', sys.argv[1], '--no-history'])\n"
              "except SystemExit:\n    pass\nprint('heavy:', sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n")
    env = {**os.environ, "LORAKIT_HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, stub.url], input="hi\n", capture_output=True, text=True, env=env, timeout=120)
    assert "model=tiny-base" in done.stdout, done.stderr
    assert "heavy: []" in done.stdout
