"""``POST /v1/chat/completions`` and ``POST /v1/completions``: checked, queued, answered or streamed.

Streams are server-sent events exactly as the official client parses them: one ``id``/``created``
for every chunk, a first chat delta with the role, content deltas, ``finish_reason`` only on the
last choice chunk, an optional usage chunk (``stream_options.include_usage``, ``choices: []``), then
``data: [DONE]``. A client that goes away cancels its sequence at the next token boundary.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from lorakit.serving.api_errors import ApiError, bad
from lorakit.serving.mixes import MixError, mix_label, parse_adapters_field, parse_mix
from lorakit.serving.prompting import chat_ids, completion_ids, prompt_formats
from lorakit.serving.protocol import Completion, parse_chat, parse_completion
from lorakit.serving.sequences import Sequence


def resolve_mix(runtime, completion: Completion):
    base_id = runtime.request.model_id
    pool = runtime.pool
    try:
        if completion.adapters is not None:
            if completion.model != base_id:
                raise MixError(f"with \"adapters\", 'model' must name the base ({base_id})")
            return parse_adapters_field(completion.adapters)
        return parse_mix(completion.model, base_id, pool.default_weight if pool else (lambda name: 1.0))
    except MixError as error:
        raise bad(str(error), "adapters" if completion.adapters is not None else "model") from None


class Generation:
    """One request in flight: the sequence, the queue its events arrive on, how to log it."""

    def __init__(self, app_state, request, completion: Completion, chat: bool):
        self.state, self.request, self.completion, self.chat = app_state, request, completion, chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.queue: asyncio.Queue = asyncio.Queue()
        self.seq: Sequence | None = None
        self.started = time.perf_counter()

    async def start(self) -> None:
        from starlette.concurrency import run_in_threadpool

        runtime, completion = self.state.runtime, self.completion
        mix = resolve_mix(runtime, completion)
        await run_in_threadpool(runtime.acquire, mix)
        try:
            prompt = self._prompt(runtime, mix)
            context = runtime.engine.context
            if len(prompt) >= context:
                raise bad(f"the prompt is {len(prompt)} tokens; this model's context is {context}", "messages" if self.chat else "prompt")
            limit = min(runtime.request.max_tokens_limit, context - len(prompt))
            max_tokens = min(completion.max_tokens or limit, limit)
            loop = asyncio.get_running_loop()

            def emit(kind, data):
                try:
                    loop.call_soon_threadsafe(self.queue.put_nowait, (kind, data))
                except RuntimeError:  # the event loop is gone (shutdown): nobody is listening
                    pass

            self.seq = Sequence(prompt, mix, completion.params, max_tokens, completion.stops, emit, ignore_eos=completion.ignore_eos,
                                min_tokens=min(completion.min_tokens, max_tokens))
            runtime.engine.submit(self.seq)
        except BaseException:
            runtime.release(mix)
            raise

    def _prompt(self, runtime, mix) -> list[int]:
        tokenizer = runtime.session.tokenizer
        with runtime.engine.tokenizer_lock:
            if not self.chat:
                return completion_ids(tokenizer, self.completion.prompt)
            infos = [runtime.pool.loaded[name].info for name, _ in mix] if runtime.pool else []
            return chat_ids(tokenizer, self.completion.messages, prompt_formats(infos))

    def cancel(self) -> None:
        if self.seq is not None and self.seq.finish is None:
            self.state.runtime.engine.cancel(self.seq)

    def log(self, status: int, usage: dict | None) -> None:
        tokens = f" prompt={usage['prompt_tokens']} completion={usage['completion_tokens']}" if usage else ""
        self.state.log(f"{self.request.method} {self.request.url.path} {status} model={self.completion.model}{tokens} "
                       f"{time.perf_counter() - self.started:.2f}s")

    # ---- answers -------------------------------------------------------------------------------------
    def _choice(self, text: str | None, finish, delta: dict | None = None) -> dict:
        if self.chat:
            return {"index": 0, "delta" if delta is not None else "message": delta if delta is not None else
                    {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

    def _envelope(self, choices: list, usage, streamed: bool) -> dict:
        kind = ("chat.completion" if self.chat else "text_completion") + (".chunk" if streamed and self.chat else "")
        return {"id": self.id, "object": kind, "created": self.created, "model": self.completion.model,
                "system_fingerprint": None, "choices": choices, "usage": usage}

    async def answer(self) -> dict:
        while True:
            try:
                kind, data = await asyncio.wait_for(self.queue.get(), timeout=0.5)
            except asyncio.TimeoutError:
                if await self.request.is_disconnected():
                    self.cancel()
                    self.log(499, None)
                    raise ApiError(499, "the client closed the connection")
                continue
            if kind == "done":
                self.log(200, data["usage"])
                return self._envelope([self._choice(data["text"], data["finish_reason"])], data["usage"], False)
            if kind == "error":
                self.log(data["status"], None)
                raise ApiError(data["status"], data["message"])

    async def stream(self):
        usage = None
        status = 200
        try:
            if self.chat:
                yield _sse(self._envelope([self._choice(None, None, {"role": "assistant", "content": ""})], None, True))
            while True:
                kind, data = await self.queue.get()
                if kind == "text":
                    delta = {"content": data["text"]} if self.chat else None
                    yield _sse(self._envelope([self._choice(data["text"], None, delta)], None, True))
                elif kind == "done":
                    usage = data["usage"]
                    yield _sse(self._envelope([self._choice("", data["finish_reason"], {} if self.chat else None)], None, True))
                    if self.completion.include_usage:
                        yield _sse(self._envelope([], usage, True))
                    yield "data: [DONE]\n\n"
                    return
                else:
                    status = data["status"]
                    yield _sse(ApiError(status, data["message"]).body())
                    return
        finally:
            if self.seq is not None and self.seq.finish is None:
                status = 499
                self.cancel()
            self.log(status, usage)


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def generate(app_state, request, body: dict, chat: bool):
    from starlette.responses import JSONResponse, StreamingResponse

    limit = app_state.runtime.request.max_tokens_limit
    completion = parse_chat(body, limit) if chat else parse_completion(body, limit)
    generation = Generation(app_state, request, completion, chat)
    await generation.start()
    request.state.logged = True
    if completion.stream:
        return StreamingResponse(generation.stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        return JSONResponse(await generation.answer())
    except asyncio.CancelledError:
        generation.cancel()
        raise


__all__ = ["generate", "mix_label"]
