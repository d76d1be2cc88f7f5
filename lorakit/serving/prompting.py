"""A request's messages or prompt -> token ids, in the prompt format its adapters were trained with.

The same choice ``lorakit generate --template auto`` makes: the format recorded in the adapters'
``prompt_format.json`` (alpaca, raw or chat), else the model's chat template, else raw text. A chat
request keeps its whole history with the chat template; alpaca and raw formats see the last user
message (and the system message, where the format has one), the way those adapters were trained.
"""

from __future__ import annotations

from lorakit.inference.prompts import has_chat_template, pick_template, render
from lorakit.serving.api_errors import bad


def chat_ids(tokenizer, messages: list[dict], trained: list[str]) -> list[int]:
    template = pick_template("auto", tokenizer, trained)
    if template == "chat":
        if messages[-1]["role"] == "assistant":
            raise bad("the last message must come from the user (or system)", "messages")
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        raise bad("'messages' has no user message", "messages")
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    text, special = render(template, tokenizer, users[-1], None, system)
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def completion_ids(tokenizer, prompt: str) -> list[int]:
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def trained_formats(adapters) -> list[str]:
    return [info.prompt_format.get("template", "") for info in adapters if info is not None and info.prompt_format]


__all__ = ["chat_ids", "completion_ids", "has_chat_template", "trained_formats"]
