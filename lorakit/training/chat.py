"""Chat datasets through the tokenizer's own chat template, with the loss on assistant turns only.

Rows are ``{"messages": [{"role", "content"}, ...]}`` or ShareGPT ``{"conversations": [{"from",
"value"}, ...]}`` (``human``/``gpt`` mapped to ``user``/``assistant``).

Which characters belong to an assistant turn is found by rendering prefixes of the conversation:
``render(messages[:i], add_generation_prompt=True)`` ends exactly where assistant turn ``i``'s
content starts, and ``render(messages[:i+1])`` ends after its end-of-turn marker. The trained span is
the text between the two, without trailing whitespace: the content *and* the end-of-turn token
(``<|im_end|>`` for ChatML templates) are trained, so the model learns to stop, while the
``<|im_start|>assistant`` header and the newline after the end-of-turn token are not. Templates whose
prefixes are not stable fall back to locating each assistant content in the full rendering.
"""

from __future__ import annotations

from lorakit.training.formatters import Rendered, RowError

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
    "tool": "tool",
}


def conversation_of(row: dict) -> list[dict]:
    """A row's messages as ``[{"role", "content"}]``, whichever of the two layouts it uses."""
    if not isinstance(row, dict):
        raise RowError(f"is a {type(row).__name__}, expected an object with 'messages' or 'conversations'")
    if "messages" in row:
        raw, role_key, text_key = row["messages"], "role", "content"
    elif "conversations" in row:
        raw, role_key, text_key = row["conversations"], "from", "value"
    else:
        raise RowError(f"has no 'messages' or 'conversations' (keys: {', '.join(sorted(row))})")
    if not isinstance(raw, list) or not raw:
        raise RowError("has an empty or non-list conversation")
    messages = []
    for number, turn in enumerate(raw, start=1):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise RowError(f"has a turn ({number}) without '{role_key}' and '{text_key}'")
        role = SHAREGPT_ROLES.get(str(turn[role_key]).lower())
        if role is None:
            raise RowError(f"has an unknown role '{turn[role_key]}' in turn {number}")
        content = turn[text_key]
        if not isinstance(content, str):
            raise RowError(f"has non-text content in turn {number}")
        messages.append({"role": role, "content": content})
    if not any(message["role"] == "assistant" for message in messages):
        raise RowError("has no assistant turn to train on")
    return messages


class ChatTemplateFormatter:
    """Renders conversations with the tokenizer's chat template; trains the assistant turns."""

    name = "chat"
    kind = "chat"
    description = "messages / ShareGPT conversations through the model's chat template (assistant turns trained)"

    def accepts(self, row: dict) -> bool:
        return isinstance(row, dict) and ("messages" in row or "conversations" in row)

    def render(self, row: dict, tokenizer) -> Rendered:
        if not getattr(tokenizer, "chat_template", None):
            raise RowError("needs a chat template but the tokenizer has none (use --format chatml or a format file)")
        messages = conversation_of(row)
        full = _render(tokenizer, messages, generation_prompt=False)
        spans = _spans_by_prefix(tokenizer, messages, full)
        if spans is None:
            spans = _spans_by_search(tokenizer, messages, full)
        return Rendered(full, trained_spans=spans)

    def as_record(self) -> dict:
        return {"name": self.name, "kind": self.kind}


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as error:  # jinja raises TemplateError / exceptions raised by the template itself
        raise RowError(f"cannot be rendered by the chat template: {error}") from None


def _spans_by_prefix(tokenizer, messages: list[dict], full: str) -> list[tuple[int, int]] | None:
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if index == 0:  # nothing to render before it; let the search locate the content
            return None
        before = _render(tokenizer, messages[:index], generation_prompt=True)
        through = _render(tokenizer, messages[: index + 1], generation_prompt=False)
        if not (full.startswith(through) and through.startswith(before)):
            return None
        end = len(through.rstrip())
        if message["content"].strip() and message["content"].strip() not in through[len(before):end]:
            return None
        spans.append((len(before), end))
    return spans


def _spans_by_search(tokenizer, messages: list[dict], full: str) -> list[tuple[int, int]]:
    # Templates that rewrite earlier turns (e.g. drop reasoning) break prefix stability; find each
    # assistant content in order instead, and extend it over an end-of-sequence marker right after it.
    eos = getattr(tokenizer, "eos_token", None) or ""
    spans, cursor = [], 0
    for number, message in enumerate(messages, start=1):
        if message["role"] != "assistant":
            continue
        content = message["content"].strip()
        start = full.find(content, cursor)
        if not content or start < 0:
            raise RowError(f"cannot be masked: the chat template does not reproduce assistant turn {number}")
        end = start + len(content)
        if eos and full.startswith(eos, end):
            end += len(eos)
        spans.append((start, end))
        cursor = end
    return spans
