"""``lorakit chat --url``: the chat engine that talks to an OpenAI-compatible server.

Replies come from ``POST /v1/chat/completions`` with ``stream: true`` (server-sent events, parsed
as the official client parses them). LoRAs are names on the server: ``/lora`` and ``/weight``
change the request's ``model`` field with ``lorakit serve``'s mixture grammar (``a:0.7+b:0.3``). A
LoRA added without a weight is sent as its bare name: the server's own default for it (``lorakit
serve --lora a:0.5`` makes that 0.5), and the only form servers without mixtures (vLLM) accept. The
API key travels only in the ``Authorization`` header and is never part of a message.
"""

from __future__ import annotations

import json
import time
from typing import Callable
from urllib.parse import urlsplit

from lorakit.errors import LorakitError, UsageError
from lorakit.inference.chat_engine import Reply
from lorakit.inference.generation import SamplingSettings
from lorakit.store.lora_spec import parse_lora

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0  # a long answer on a slow CPU server still streams within this per chunk


def api_base(url: str) -> str:
    """``http://host:port`` or ``http://host:port/v1`` -> the ``/v1`` base every request goes to."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url '{url}' is not an http(s) address", "e.g. --url http://127.0.0.1:8000")
    base = url.strip().rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def mixture(base_model: str, loras: list[tuple[str, float | None]]) -> str:
    """The ``model`` field for these LoRAs: the base id, or terms ``NAME`` (the server's default weight) or
    ``NAME:W`` joined by ``+``."""
    if not loras:
        return base_model
    return "+".join(name if weight is None else f"{name}:{weight:g}" for name, weight in loras)


class RemoteChatEngine:
    """Chat replies from a server; ``explicit`` names the sampling settings the user set on purpose."""

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, explicit: frozenset[str] = frozenset(),
                 loras=()):
        import httpx

        self.base = api_base(url)
        parts = urlsplit(self.base)
        self.shown = self.base.replace(parts.netloc, parts.netloc.rpartition("@")[2], 1)  # no user:password in messages
        self._secret = api_key
        self.explicit = explicit
        self._loras: list[tuple[str, float | None]] = []
        for text in loras:  # every --lora is checked before the server is asked anything
            self.add_lora(text)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        try:
            self.model = model or self._base_model_id()
        except BaseException:
            self.client.close()
            raise

    # ---- the server ------------------------------------------------------------------------------
    def _failure(self, error: Exception) -> LorakitError:
        import httpx

        if isinstance(error, httpx.TimeoutException):
            return LorakitError(f"the server at {self.shown} did not answer in time", "check that it is running and not overloaded")
        return LorakitError(f"cannot reach the server at {self.shown} ({type(error).__name__})", "start it (lorakit serve) or check --url")

    def _refusal(self, status: int, body: bytes) -> LorakitError:
        message = ""
        try:
            data = json.loads(body)
            error = data.get("error", data) if isinstance(data, dict) else data
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            message = message or (data.get("detail", "") if isinstance(data, dict) else "")
        except (ValueError, AttributeError):
            message = body.decode("utf-8", "replace")[:200]
        if status == 401:
            return LorakitError("the server refused the API key (401)", "set LORAKIT_API_KEY or pass --api-key")
        message = " ".join(str(message).split()) or "no reason given"
        if self._secret:
            message = message.replace(self._secret, "***")  # a server that echoes the key must not make us print it
        return LorakitError(f"the server answered {status}: {message}")

    def _base_model_id(self) -> str:
        """The first listed model that is not an adapter of another (vLLM and lorakit serve mark those with ``parent``)."""
        try:
            response = self.client.get(self.base + "/models")
        except Exception as error:  # noqa: BLE001  (httpx's transport errors have no common public base)
            raise self._failure(error) from None
        if response.status_code != 200:
            refusal = self._refusal(response.status_code, response.content)
            if response.status_code != 401:
                refusal.hint = "name the model: lorakit chat MODEL --url ..."
            raise refusal
        try:
            listed = response.json().get("data")
        except (ValueError, AttributeError):
            raise LorakitError(f"{self.shown}/models did not answer an OpenAI model list", "is --url an OpenAI-compatible server?") from None
        models = [item for item in listed or [] if isinstance(item, dict) and item.get("id")] if isinstance(listed, list) else []
        if not models:
            raise LorakitError(f"the server at {self.shown} lists no model", "name one: lorakit chat MODEL --url ...")
        return next((item for item in models if not item.get("parent")), models[0])["id"]

    # ---- what the REPL shows ---------------------------------------------------------------------
    def describe(self) -> str:
        return f"'{self.model}' at {self.shown}; /lora names are the server's adapters"

    def loras(self) -> list[tuple[str, float | None]]:
        """Names and weights; ``None``: no weight was given, the server applies its default."""
        return list(self._loras)

    def model_field(self) -> str:
        return mixture(getattr(self, "model", "") or "the base", self._loras)

    # ---- LoRAs are names on the server --------------------------------------------------------------
    def add_lora(self, text: str) -> str:
        spec = parse_lora(text)
        if any(name == spec.name for name, _ in self._loras):
            raise UsageError(f"'{spec.name}' is already in the mixture", f"change its weight with /weight {spec.name} W")
        if "+" in spec.name:
            raise UsageError(f"'{spec.name}': add one adapter at a time", "e.g. /lora add a:0.7 then /lora add b:0.3")
        weight = spec.weight if spec.text.strip() != spec.name else None  # NAME alone: the server's default weight
        self._loras.append((spec.name, weight))
        shown = "the server's default weight" if weight is None else f"weight {weight:g}"
        return f"added {spec.name} ({shown}): requests now ask for model '{self.model_field()}'"

    def remove_lora(self, name: str) -> str:
        self._index(name)
        self._loras = [item for item in self._loras if item[0] != name]
        return f"removed {name}: requests now ask for model '{self.model_field()}'"

    def set_weight(self, name: str, weight: float) -> str:
        index = self._index(name)
        self._loras[index] = (name, weight)
        return f"{name} weight {weight:g}: requests now ask for model '{self.model_field()}'"

    def _index(self, name: str) -> int:
        for index, (known, _) in enumerate(self._loras):
            if known == name:
                return index
        raise UsageError(f"no LoRA named '{name}' is in use", "in use: " + (", ".join(n for n, _ in self._loras) or "none"))

    # ---- replies ---------------------------------------------------------------------------------
    def request_body(self, system: str | None, turns: list[dict], settings: SamplingSettings) -> dict:
        messages = ([{"role": "system", "content": system}] if system else []) + list(turns)
        body = {"model": self.model_field(), "messages": messages, "stream": True, "stream_options": {"include_usage": True},
                "max_tokens": settings.max_new_tokens}
        # OpenAI semantics: temperature 0 is greedy, and no penalty or top-k unless asked for.
        body["temperature"] = 0 if settings.greedy else settings.temperature
        if not settings.greedy:
            body["top_p"] = settings.top_p
        if settings.seed is not None:
            body["seed"] = settings.seed
        if "repetition_penalty" in self.explicit:
            body["repetition_penalty"] = settings.repetition_penalty
        if "top_k" in self.explicit and not settings.greedy:
            body["top_k"] = settings.top_k
        return body

    def reply(self, system: str | None, turns: list[dict], settings: SamplingSettings,
              on_text: Callable[[str], None] | None = None) -> Reply:
        started = time.perf_counter()
        pieces: list[str] = []
        finish, usage = "length", None
        try:
            with self.client.stream("POST", self.base + "/chat/completions", json=self.request_body(system, turns, settings)) as response:
                if response.status_code != 200:
                    raise self._refusal(response.status_code, response.read())
                for chunk in _events(response.iter_lines()):
                    if "error" in chunk:
                        raise self._refusal(500, json.dumps(chunk).encode())
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            pieces.append(piece)
                            if on_text:
                                on_text(piece)
                        finish = choice.get("finish_reason") or finish
        except LorakitError:
            raise
        except ValueError:
            raise LorakitError(f"the server at {self.shown} sent an event that is not JSON", "is --url an OpenAI-compatible server?") from None
        except Exception as error:  # noqa: BLE001  (httpx's transport errors)
            raise self._failure(error) from None
        tokens = (usage or {}).get("completion_tokens") or len(pieces)
        return Reply("".join(pieces), tokens, time.perf_counter() - started, finish)

    def close(self) -> None:
        self.client.close()


def _events(lines):
    """The JSON payloads of an SSE stream's ``data:`` lines, up to ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)
