"""A small OpenAI-compatible server (FastAPI on uvicorn, on loopback) for ``chat --url`` tests.

It answers ``/v1/models`` and streamed ``/v1/chat/completions`` in the shape the official client
parses (a role delta, content deltas, ``finish_reason`` on the last choice chunk, a usage chunk,
``data: [DONE]``), with OpenAI error objects for a wrong key (401) and an unknown model (404). The
reply text describes the request it got, and every request body is kept, so a test sees exactly
what the chat sent.
"""

import json
import socket
import threading
import time

BASE = "tiny-base"
ADAPTERS = ("a", "b")


def _error(status: int, message: str, param=None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}, status_code=status)


def _known(model: str) -> bool:
    return model == BASE or all(part.split(":")[0] in ADAPTERS for part in model.split("+"))


def build_app(server: "OpenAIStub"):  # no __future__ annotations here: FastAPI reads them
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    def refused(request: Request):
        if server.api_key and request.headers.get("authorization") != f"Bearer {server.api_key}":
            return _error(401, "invalid API key")
        return None

    @app.get("/v1/models")
    async def models(request: Request):
        if (answer := refused(request)) is not None:
            return answer
        data = [{"id": BASE, "object": "model", "created": 0, "owned_by": "test"}]
        data += [{"id": name, "object": "model", "created": 0, "owned_by": "test", "parent": BASE} for name in ADAPTERS]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if (answer := refused(request)) is not None:
            return answer
        body = await request.json()
        server.bodies.append(body)
        if not _known(body["model"]):
            return _error(404, f"The model `{body['model']}` does not exist.", "model")
        system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        text = f"model={body['model']} system={system} turns={len(body['messages'])} last={body['messages'][-1]['content']}"
        words = text.split(" ")

        def events():
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()), "model": body["model"]}
            yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': ''}, 'finish_reason': None}]})}\n\n"
            for index, word in enumerate(words):
                piece = word if index == 0 else " " + word
                yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'content': piece}, 'finish_reason': None}]})}\n\n"
            yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
            usage = {"prompt_tokens": 3, "completion_tokens": len(words), "total_tokens": 3 + len(words)}
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class OpenAIStub:
    def __init__(self, api_key=None):
        self.api_key = api_key
        self.bodies: list[dict] = []

    def start(self) -> "OpenAIStub":
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(build_app(self), log_level="error", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        assert self.server.started, "the test server did not start"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
