"""``lorakit chat --url`` against a real ``lorakit serve`` (a subprocess on loopback): the same
conversation, LoRA changes and greedy settings give the same replies as the in-process chat."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("lorakit.commands.serve")
REPO = Path(__file__).resolve().parents[2]
SETTINGS = ("--greedy", "--repetition-penalty", "1", "--max-new-tokens", "8", "--no-history")


@pytest.fixture
def server(tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    home = tmp_path / "serve-home"
    (home / "loras").mkdir(parents=True)
    shutil.copytree(tiny_adapter_dir, home / "loras" / "a")
    shutil.copytree(tiny_adapter2_dir, home / "loras" / "b")
    env = {**os.environ, "LORAKIT_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("LORAKIT_API_KEY", None)
    process = subprocess.Popen([sys.executable, "-m", "lorakit", "serve", str(tiny_model_dir), "--port", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url, lines, deadline = None, [], time.monotonic() + 180
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                raise AssertionError("serve exited: " + "".join(lines))
            lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            url = match.group(1) if match else None
        assert url, "no ready line: " + "".join(lines)
        threading.Thread(target=process.stderr.read, daemon=True).start()  # its request log must never fill the pipe
        yield url, home / "loras"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _script(a: str, b: str, saves: list[Path]) -> str:
    return "\n".join([
        "hello", f"/lora add {a}", "and then?", f"/save {saves[0]}", "/reset",
        "/weight a 0.5", f"/lora add {b}:0.3", "hello", f"/save {saves[1]}", "/reset",
        "/lora remove a", "/lora remove b", "hello", f"/save {saves[2]}",
    ]) + "\n"


def test_a_conversation_through_lorakit_serve_equals_the_in_process_chat(server, run_cli, tiny_model_dir, tmp_path):
    url, loras = server
    remote = [tmp_path / f"remote{i}.json" for i in range(3)]
    local = [tmp_path / f"local{i}.json" for i in range(3)]
    code, out, err = run_cli("chat", "--url", url, *SETTINGS, input=_script("a", "b", remote))
    assert code == 0, err
    assert "error" not in err, err
    code, out, err = run_cli("chat", str(tiny_model_dir), *SETTINGS, input=_script(str(loras / "a"), str(loras / "b"), local))
    assert code == 0, err
    for mine, theirs in zip(local, remote):
        assert json.loads(theirs.read_text())["messages"] == json.loads(mine.read_text())["messages"]
    texts = [m["content"] for path in local for m in json.loads(path.read_text())["messages"] if m["role"] == "assistant"]
    assert len(set(texts)) == 3 and texts[0] == texts[3]  # base, with a, the mixture told apart; base again at the end
