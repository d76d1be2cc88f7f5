"""The FastAPI application: models, completions, runtime adapter management, errors, the key.

Every error is an OpenAI error object (``{"error": {"message", "type", "param", "code"}}``) with the
status the official client expects; an unexpected exception is a 500 for that request only. With an
API key, every route but ``/health`` needs ``Authorization: Bearer KEY`` (compared in constant
time; the key is never logged). Request bodies are bounded (``413`` beyond the limit).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) as objects.

import hmac
import json
import sys
import time

from lorakit.serving.api_errors import ApiError, bad

MAX_BODY_BYTES = 1 << 20


class AppState:
    def __init__(self, runtime, api_key: str | None, max_body: int = MAX_BODY_BYTES, log=None):
        self.runtime, self.api_key, self.max_body = runtime, api_key, max_body
        self.log = log or (lambda line: print(f"lorakit serve: {line}", file=sys.stderr, flush=True))
        self.created = int(time.time())


async def read_json(request, limit: int):
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes")
    try:
        return json.loads(bytes(body) or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise bad(f"the request body is not valid JSON: {error}") from None


def _model_records(state: AppState) -> list[dict]:
    runtime = state.runtime
    request = runtime.request
    base = {"id": request.model_id, "object": "model", "created": state.created, "owned_by": "lorakit",
            "root": str(request.model_path), "parent": None}
    records = [base]
    if runtime.fixed_mix is not None:
        names = {name: str(path) for name, path, _ in request.loras}
        records += [{"id": name, "object": "model", "created": state.created, "owned_by": "lorakit", "root": names[name],
                     "parent": request.model_id} for name, _ in runtime.fixed_mix]
        return records
    for item in runtime.pool.servable().values():
        records.append({"id": item.name, "object": "model", "created": item.created or state.created, "owned_by": "lorakit",
                        "root": str(item.path), "parent": request.model_id})
    return records


def _name(body, key: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise bad(f"'{key}' is required", key)
    return value.strip()


def build_app(state: AppState):
    from fastapi import FastAPI, Request
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse

    from lorakit.serving.generation_routes import generate

    app = FastAPI(title="lorakit serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.lorakit = state

    def error_response(error: ApiError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(ApiError)
    async def api_error(request, error: ApiError):
        return error_response(error)

    @app.exception_handler(Exception)
    async def unexpected(request, error: Exception):
        state.log(f"internal error: {type(error).__name__}: {error}")
        return error_response(ApiError(500, f"internal error: {type(error).__name__}"))

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        message = "no such route" if error.status_code == 404 else str(error.detail)
        return error_response(ApiError(error.status_code, f"{message}: {request.method} {request.url.path}"))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": await run_in_threadpool(_model_records, state)}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        for record in await run_in_threadpool(_model_records, state):
            if record["id"] == model_id:
                return record
        raise ApiError(404, f"the model '{model_id}' does not exist", "model", "model_not_found")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await generate(state, request, await read_json(request, state.max_body), chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await generate(state, request, await read_json(request, state.max_body), chat=False)

    @app.post("/v1/load_lora_adapter")
    async def load_lora(request: Request):
        body = await read_json(request, state.max_body)
        name, path = _name(body, "lora_name"), _name(body, "lora_path")
        runtime = state.runtime
        if runtime.fixed_mix is not None:
            raise bad(f"the '{runtime.session.loader.name}' loader cannot add adapters while serving", "lora_name")
        if name == runtime.request.model_id or "+" in name or "/" in name or name.rpartition(":")[2].replace(".", "", 1).isdigit():
            raise bad(f"'{name}' cannot name an adapter (it is the base's id or looks like a mixture)", "lora_name")
        item = await run_in_threadpool(runtime.pool.add, name, path)
        return {"object": "lora_adapter", "id": item.name, "root": str(item.path), "status": "loaded",
                "message": f"Success: LoRA adapter '{item.name}' added successfully."}

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora(request: Request):
        body = await read_json(request, state.max_body)
        name = _name(body, "lora_name")
        runtime = state.runtime
        if runtime.fixed_mix is not None:
            raise bad(f"the '{runtime.session.loader.name}' loader cannot remove adapters while serving", "lora_name")
        await run_in_threadpool(runtime.pool.remove, name)
        return {"object": "lora_adapter", "id": name, "status": "unloaded",
                "message": f"Success: LoRA adapter '{name}' removed successfully."}

    return Guard(app, state)


class Guard:
    """Pure ASGI (streams and disconnects pass through untouched): the key, the body bound, one log line."""

    def __init__(self, app, state: AppState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        seen = {"status": 500}
        scope.setdefault("state", {})

        async def send_status(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        refusal = self._refusal(scope)
        try:
            if refusal is not None:
                await _send_error(send_status, refusal)
            else:
                await self.app(scope, receive, send_status)
        finally:
            if not scope["state"].get("logged") or seen["status"] != 200:
                self.state.log(f"{scope['method']} {scope['path']} {seen['status']} {time.perf_counter() - started:.2f}s")

    def _refusal(self, scope) -> ApiError | None:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        if self.state.api_key is not None and scope["path"] != "/health":
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.state.api_key}".encode()):
                what = "missing" if not given else "wrong"
                return ApiError(401, f"the API key is {what}; send Authorization: Bearer <key>", code="invalid_api_key")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.state.max_body):
            return ApiError(413, f"the request body is larger than {self.state.max_body} bytes")
        return None


async def _send_error(send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(key.lower().encode(), value.encode()) for key, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
