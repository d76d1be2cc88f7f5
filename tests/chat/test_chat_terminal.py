"""``lorakit chat`` as a person runs it: a real subprocess on a pseudo-terminal, so readline is live."""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")
REPO = Path(__file__).resolve().parents[2]
UP = "\x1b[A"


NOISE = ("Warning", "warn(", "Traceback", "it/s]")


def _spawn(home, *args, stdout_to=None):
    env = {**os.environ, "LORAKIT_HOME": str(home), "TERM": "xterm", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "lorakit", "chat", *args, "--greedy", "--max-new-tokens", "4"]
    if stdout_to is not None:  # `lorakit chat > file` typed at a shell
        argv = ["/bin/sh", "-c", 'exec "$@" > ' + shlex.quote(str(stdout_to)), "sh", *argv]
    child = pexpect.spawn(argv[0], argv[1:],
                          env=env, encoding="utf-8", timeout=120, dimensions=(40, 200))
    child.logfile_read = io.StringIO()  # everything the user sees, for the no-noise check
    child.expect_exact("you> ")
    return child


def test_readline_editing_and_history_across_sessions(tiny_model_dir, lorakit_home, tmp_path):
    saved = tmp_path / "talk.json"
    child = _spawn(lorakit_home, str(tiny_model_dir))
    child.send("ello\x01h\r")  # Ctrl-A goes to the start of the line: the line sent is "hello"
    child.expect_exact("tokens/s")
    child.expect_exact("you> ")
    child.send("junk\x03")  # Ctrl-C at the prompt drops the line and the chat goes on
    child.expect_exact("you> ")
    child.send(UP + "\r")  # the previous line again
    child.expect_exact("tokens/s")
    child.expect_exact("you> ")
    child.send(f"/save {saved}\r")
    child.expect_exact("saved 4 messages")
    child.expect_exact("you> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    screen = child.logfile_read.getvalue()
    assert "chatting with tiny-llama on the 'transformers' loader" in screen
    assert [line for line in screen.splitlines() if any(mark in line for mark in NOISE)] == []
    users = [m["content"] for m in json.loads(saved.read_text())["messages"] if m["role"] == "user"]
    assert users == ["hello", "hello"]
    history = (lorakit_home / "chat_history").read_text().splitlines()
    assert [line for line in history if line in ("hello", f"/save {saved}")] == ["hello", "hello", f"/save {saved}"]
    assert oct((lorakit_home / "chat_history").stat().st_mode & 0o777) == "0o600"

    # A new session recalls the last one's lines (this one talks to a server: it starts without torch).
    from openai_sse_server import OpenAIStub

    server = OpenAIStub().start()
    try:
        child = _spawn(lorakit_home, "--url", server.url)
        child.send(UP + "\r")
        child.expect_exact("saved 0 messages")
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0

        answers = tmp_path / "answers.txt"  # `lorakit chat > answers.txt`: the prompt stays on the terminal
        child = _spawn(lorakit_home, "--url", server.url, stdout_to=answers)
        child.send("hello\r")
        child.expect_exact("tokens/s")
        child.expect_exact("you> ")
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert answers.read_text() == "model=tiny-base system= turns=1 last=hello\n"  # only the reply is data
    finally:
        server.stop()
