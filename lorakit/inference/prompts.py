"""Prompt templates for generation: raw, alpaca (with and without input), the model's chat template,
every other shipped training format (alpaca-chatbot, chatml, llama2-chat, vicuna) and, for ``auto``,
the format file an adapter recorded in its ``prompt_format.json``, whatever its name.

The alpaca strings are the same as the shipped ``alpaca`` training format, so a LoRA trained with
``--format alpaca`` sees at inference exactly the text it was trained on; the other formats are cut
from their format files the same way (``inference/format_prompts.py``).
"""

from __future__ import annotations

from lorakit.errors import UsageError

FORMAT_FILES = ("alpaca-chatbot", "chatml", "llama2-chat", "vicuna")  # the shipped formats beyond alpaca (lorakit/data/formats)
TEMPLATES = ("auto", "raw", "alpaca", "chat", *FORMAT_FILES)

ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def pick_template(requested: str, tokenizer, trained_with: list[str]) -> str:
    """``auto``: what the LoRAs were trained with, else the chat template if the model has one, else raw."""
    if requested not in TEMPLATES:
        raise UsageError(f"unknown --template '{requested}'", "use one of: " + ", ".join(TEMPLATES))
    if requested != "auto":
        return requested
    known = [name for name in trained_with if name in TEMPLATES and name != "auto"]
    if known:
        return known[0]
    return "chat" if has_chat_template(tokenizer) else "raw"


def pick_prompt_format(requested: str, tokenizer, records: list[dict]) -> tuple[str, dict | None]:
    """``(template name, format-file templates or None)``: :func:`pick_template`, and for ``auto`` also
    a format file that is not shipped but whose templates the adapter recorded."""
    if requested == "auto":
        for record in records:
            name, templates = record.get("template") or "", record.get("templates")
            if name in TEMPLATES and name != "auto":
                return name, None
            if record.get("kind") == "format" and isinstance(templates, dict) and templates:
                return name or "format file", templates
    return pick_template(requested, tokenizer, [record.get("template") or "" for record in records]), None


def render(template: str, tokenizer, prompt: str, input_text: str | None = None, system: str | None = None,
           templates: dict | None = None, warn=None) -> tuple[str, bool]:
    """Return (text, add_special_tokens); chat templates add their own special tokens."""
    if templates is not None or template in FORMAT_FILES:
        from lorakit.inference.format_prompts import render_format, shipped_templates

        return render_format(template, templates or shipped_templates(template), prompt, input_text, system, warn), True
    if template == "raw":
        return (prompt if not input_text else f"{prompt}\n{input_text}"), True
    if template == "alpaca":
        if input_text:
            return ALPACA_WITH_INPUT.format(instruction=prompt, input=input_text), True
        return ALPACA.format(instruction=prompt), True
    if template == "chat":
        if not has_chat_template(tokenizer):
            raise UsageError("this model has no chat template", "use --template raw or --template alpaca")
        messages = []
        if system:
            messages.append({"role": "system", "content": system})
        content = prompt if not input_text else f"{prompt}\n\n{input_text}"
        messages.append({"role": "user", "content": content})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), False
    raise UsageError(f"unknown template '{template}'")


def encode(tokenizer, text: str, add_special_tokens: bool):
    return tokenizer(text, return_tensors="pt", add_special_tokens=add_special_tokens)["input_ids"]
