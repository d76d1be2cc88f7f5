"""Request bodies of the OpenAI API, checked field by field into what the engine needs.

Every wrong value is a 400 naming its field (``param``), the way OpenAI answers; fields lorakit does
not use are ignored, as OpenAI-compatible servers do, except those whose absence of support would
change the answer (``n`` > 1, ``logprobs``, ``echo``, ``suffix``, tools), which are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lorakit.serving.api_errors import bad
from lorakit.serving.sampling import SamplingParams


@dataclass
class Completion:
    """A checked request: what to generate from, and how."""

    model: str
    params: SamplingParams
    max_tokens: int | None
    stops: tuple[str, ...]
    stream: bool
    include_usage: bool
    messages: list[dict] | None = None
    prompt: str | None = None
    adapters: object = None
    ignore_eos: bool = False
    min_tokens: int = 0


def _number(body: dict, key: str, default, low=None, high=None, low_open=False):
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise bad(f"'{key}' must be a number, not {value!r}", key)
    if low is not None and (value < low or (low_open and value == low)):
        raise bad(f"'{key}' must be {'above' if low_open else 'at least'} {low:g} (got {value:g})", key)
    if high is not None and value > high:
        raise bad(f"'{key}' must be at most {high:g} (got {value:g})", key)
    return float(value)


def _integer(body: dict, key: str, low: int | None = None):
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad(f"'{key}' must be an integer, not {value!r}", key)
    if low is not None and value < low:
        raise bad(f"'{key}' must be at least {low} (got {value})", key)
    return value


def _common(body: dict, max_tokens_limit: int) -> dict:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad("'model' is required: the base's id, an adapter's name or a mixture such as a:0.7+b:0.3", "model")
    for key in ("logprobs", "echo", "tools", "functions", "logit_bias", "top_logprobs"):
        if body.get(key) not in (None, False, [], {}):
            raise bad(f"'{key}' is not supported by lorakit serve", key)
    if body.get("n", 1) not in (1, None):
        raise bad("'n' must be 1 (one answer per request)", "n")
    if body.get("suffix"):
        raise bad("'suffix' is not supported by lorakit serve", "suffix")
    limit_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, limit_key, low=1)
    if max_tokens is not None and max_tokens > max_tokens_limit:
        raise bad(f"'{limit_key}' is {max_tokens}, this server allows at most {max_tokens_limit}", limit_key)
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop) and len(stop) <= 4:
        stops = tuple(item for item in stop if item)
    else:
        raise bad("'stop' must be a string or a list of at most 4 strings", "stop")
    seed = _integer(body, "seed")
    params = SamplingParams(
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        seed=seed,
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.0, None, low_open=True),
    )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("'stream_options' must be an object", "stream_options")
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise bad("'ignore_eos' must be true or false", "ignore_eos")
    min_tokens = _integer(body, "min_tokens", low=0) or 0
    return dict(model=model.strip(), params=params, ignore_eos=ignore_eos, min_tokens=min_tokens, max_tokens=max_tokens, stops=stops, stream=stream,
                include_usage=bool(options.get("include_usage")), adapters=body.get("adapters"))


def _content(message: dict, index: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"messages[{index}].content: only text parts are supported", "messages")
            parts.append(part["text"])
        return "".join(parts)
    raise bad(f"messages[{index}].content must be a string or a list of text parts", "messages")


def parse_chat(body: dict, max_tokens_limit: int) -> Completion:
    common = _common(body, max_tokens_limit)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list of {role, content}", "messages")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
            raise bad(f"messages[{index}] needs a role of system, user or assistant", "messages")
        role = "system" if message["role"] == "developer" else message["role"]
        checked.append({"role": role, "content": _content(message, index)})
    return Completion(messages=checked, **common)


def parse_completion(body: dict, max_tokens_limit: int) -> Completion:
    common = _common(body, max_tokens_limit)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad("'prompt' must be a string (one prompt per request)", "prompt")
    return Completion(prompt=prompt, **common)
