"""A real lorakit server (uvicorn on 127.0.0.1, port 0) in a thread of the test process.

The model loads once per test module; extra apps (another key, other bounds) can share its runtime
on another port. Clients are the official ``openai`` package and plain ``httpx`` for raw bytes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Running:
    url: str
    runtime: object
    server: object
    thread: threading.Thread
    log: list

    def client(self, key: str = "none", **extra):
        from openai import OpenAI

        return OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **extra)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_app(runtime, api_key=None, max_body=1 << 20, grace=5.0) -> Running:
    from lorakit.serving.app import AppState, build_app
    from lorakit.serving.server import bind, make_server

    log: list[str] = []
    state = AppState(runtime, api_key, max_body, log=log.append)
    sock = bind("127.0.0.1", 0)
    server = make_server(build_app(state), sock, grace)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return Running(f"http://127.0.0.1:{sock.getsockname()[1]}", runtime, server, thread, log)


def open_tiny_runtime(model_dir: Path, loras_dir: Path, preload=(), **bounds):
    from lorakit.loaders.options import LoadOptions
    from lorakit.serving.engines import ServeRequest
    from lorakit.serving.runtime import open_runtime

    request = ServeRequest(model_path=model_dir, model_id=model_dir.name, loras=tuple(preload), loras_dir=loras_dir,
                           load_options=LoadOptions(), **bounds)
    runtime = open_runtime(request)
    runtime.engine.on_finished = lambda seq: runtime.release(seq.mix)
    runtime.engine.start()
    return runtime


def chat(client, model: str, content: str = "Paris is the capital of", max_tokens: int = 12, **extra) -> str:
    extra.setdefault("temperature", 0)
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                            max_tokens=max_tokens, **extra)
    return answer.choices[0].message.content


def wait_idle(engine, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while engine.busy() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not engine.busy()
