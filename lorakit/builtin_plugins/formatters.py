"""Built-in formatters: the shipped format files (alpaca, alpaca-chatbot, chatml, llama2-chat,
vicuna) and ``chat`` (the tokenizer's chat template), registered like any plugin's.

Imported by the CLI at start-up: format files are read only when the hook runs, and nothing here
imports torch or transformers.
"""

from __future__ import annotations

from lorakit import hookimpl
from lorakit.api import ChatTemplateFormatter, shipped_formatters


@hookimpl
def register_formatters(register):
    for formatter in shipped_formatters():
        register(formatter)
    register(ChatTemplateFormatter())
