"""A request's messages or prompt -> token ids, in the prompt format its adapters were trained with.

The same choice and the same rendering as ``lorakit chat`` (:mod:`lorakit.inference.conversation`):
the format recorded in the adapters' ``prompt_format.json`` (alpaca, raw, a format file or chat),
else the model's chat template, else raw text. The whole history is kept in every format: with the
chat template the messages go in as they came; alpaca, raw and format files render each earlier
exchange the way ``chat`` does, so a server and a chat session on the same adapter see the same
tokens, and a one-message request renders exactly as ``lorakit generate`` renders that prompt.
"""

from __future__ import annotations

from lorakit.inference.conversation import choose_format
from lorakit.inference.prompts import has_chat_template
from lorakit.serving.api_errors import bad


def chat_ids(tokenizer, messages: list[dict], prompt_formats: list[dict]) -> list[int]:
    if messages[-1]["role"] == "assistant":
        raise bad("the last message must come from the user (or system)", "messages")
    chat_format = choose_format("auto", tokenizer, prompt_formats)
    if chat_format.kind == "chat":
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    turns = [message for message in messages if message["role"] in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise bad("'messages' has no user message after the last assistant message", "messages")
    systems = [message["content"] for message in messages if message["role"] == "system"]
    system = "\n".join(systems) if systems and chat_format.carries_system() else None
    text, special = chat_format.render(tokenizer, system, turns)
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def completion_ids(tokenizer, prompt: str) -> list[int]:
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def prompt_formats(adapters) -> list[dict]:
    """The recorded prompt formats of a request's adapters, first adapter first."""
    return [info.prompt_format for info in adapters if info is not None and info.prompt_format]


__all__ = ["chat_ids", "completion_ids", "has_chat_template", "prompt_formats"]
