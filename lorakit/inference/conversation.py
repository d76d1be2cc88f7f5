"""A multi-turn conversation and the prompt format that turns it into model input.

The format is the one the attached LoRAs were trained with (their recorded ``prompt_format.json``),
else the model's chat template, else raw text. A conversation's first turn renders exactly as
``lorakit generate`` renders the same prompt with the same template, so a chat and a one-shot
``generate`` see the same tokens.

Multi-turn rules for the formats that have no notion of turns (why: a LoRA trained on single
instruction/response rows still needs the earlier turns as context):

- ``alpaca``: every earlier exchange is the full alpaca prompt followed by its response and a blank
  line, then the alpaca prompt of the new instruction.
- a format file (text-generation-webui's templates, e.g. ``instruction,output``, or llama2-chat's
  ``modelanswer,userprompt``): every earlier exchange is its template with the answer filled in, one
  per line, then the new template cut just before the answer, each picked by role exactly as
  ``generate`` picks it (:mod:`lorakit.inference.format_prompts`); the system message goes in the
  first exchange when the file has a form with a system placeholder.
- ``raw``: the system message and every message, one per line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import UsageError
from lorakit.inference.prompts import ALPACA, has_chat_template



@dataclass
class Conversation:
    """The system message and the user/assistant turns so far (OpenAI's message layout)."""

    system: str | None = None
    messages: list[dict] = field(default_factory=list)

    def with_user(self, text: str) -> list[dict]:
        """The turns a reply to ``text`` is generated from (the conversation itself is unchanged)."""
        return [*self.messages, {"role": "user", "content": text}]

    def add_exchange(self, user: str, assistant: str) -> None:
        self.messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]

    def reset(self) -> None:
        self.messages = []

    def openai_messages(self, turns: list[dict] | None = None) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + list(self.messages if turns is None else turns)

    def to_record(self, **details) -> dict:
        """What ``/save`` writes: ``messages`` (a row the ``chat`` training format reads) plus details."""
        return {"messages": self.openai_messages(), **details}

    def save(self, path: Path, **details) -> Path:
        from lorakit.store.atomic import atomic_write_text

        path = Path(path).expanduser()
        if path.is_dir():
            raise UsageError(f"'{path}' is a folder", "give a file name, e.g. /save chat.json")
        try:
            atomic_write_text(path, json.dumps(self.to_record(**details), indent=2, ensure_ascii=False) + "\n")
        except OSError as error:
            raise UsageError(f"cannot write '{path}': {error.strerror or error}") from None
        return path


@dataclass(frozen=True)
class ChatFormat:
    """How turns become a prompt: ``kind`` is chat, alpaca, raw or format (a format file's templates)."""

    kind: str
    name: str
    templates: tuple[tuple[str, str], ...] = ()

    def render(self, tokenizer, system: str | None, turns: list[dict]) -> tuple[str, bool]:
        """``turns`` alternate user/assistant and end with a user message; returns (text, add_special_tokens)."""
        if self.kind == "chat":
            if not has_chat_template(tokenizer):
                raise UsageError("this model has no chat template", "use --template raw or --template alpaca")
            messages = ([{"role": "system", "content": system}] if system else []) + list(turns)
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), False
        pairs, pending = _pairs(turns)
        if self.kind == "alpaca":
            done = "".join(ALPACA.format(instruction=user) + answer + "\n\n" for user, answer in pairs)
            return done + ALPACA.format(instruction=pending), True
        if self.kind == "format":
            return self._render_format(system, pairs, pending), True
        lines = ([system] if system else []) + [text for pair in pairs for text in pair] + [pending]
        return "\n".join(lines), True

    def _render_format(self, system: str | None, pairs: list[tuple[str, str]], pending: str) -> str:
        from lorakit.inference.format_prompts import render_format

        templates = dict(self.templates)
        parts = [render_format(self.name, templates, user, None, system if index == 0 else None, answer=answer)
                 for index, (user, answer) in enumerate(pairs)]
        parts.append(render_format(self.name, templates, pending, None, None if pairs else system))
        return "\n".join(parts)

    def carries_system(self) -> bool:
        from lorakit.inference.format_prompts import has_system_form

        return self.kind in ("chat", "raw") or (self.kind == "format" and has_system_form(dict(self.templates)))

    def describe(self) -> str:
        return {"chat": "the model's chat template", "raw": "raw text", "alpaca": "the alpaca format"}.get(
            self.kind, f"the '{self.name}' format the LoRA was trained with")


def _pairs(turns: list[dict]) -> tuple[list[tuple[str, str]], str]:
    pairs, user = [], None
    for message in turns[:-1]:
        if message["role"] == "user":
            user = message["content"]
        elif message["role"] == "assistant":
            pairs.append((user or "", message["content"]))
            user = None
    return pairs, turns[-1]["content"]


def choose_format(requested: str, tokenizer, prompt_formats: list[dict]) -> ChatFormat:
    """``auto``: the first LoRA's recorded format that can be rebuilt, else the chat template, else raw.

    Any other name is one of ``generate``'s templates: raw, alpaca, chat or a shipped format file.
    """
    from lorakit.inference.format_prompts import shipped_templates
    from lorakit.inference.prompts import FORMAT_FILES, pick_template

    if requested != "auto":
        name = pick_template(requested, tokenizer, [])
        if name in FORMAT_FILES:
            return _format_file(name, shipped_templates(name))
        return ChatFormat(name, requested)
    for record in prompt_formats:
        name = record.get("template") or record.get("name") or ""
        if name in ("raw", "alpaca", "chat"):
            return ChatFormat(name, name)
        templates = record.get("templates")
        if record.get("kind") == "format" and isinstance(templates, dict):
            found = _format_file(name or "format file", templates)
            if found.templates:
                return found
        if name in FORMAT_FILES:
            return _format_file(name, shipped_templates(name))
        if record.get("kind") == "chat":
            return ChatFormat("chat", "chat")
    return ChatFormat("chat", "chat") if has_chat_template(tokenizer) else ChatFormat("raw", "raw")


def _format_file(name: str, templates: dict) -> ChatFormat:
    """A format file's templates that can hold a whole exchange (a prompt and the answer after it)."""
    from lorakit.inference.format_prompts import PLACEHOLDER

    usable = tuple((key, text) for key, text in templates.items() if isinstance(text, str) and PLACEHOLDER.search(text))
    return ChatFormat("format", name, usable)
