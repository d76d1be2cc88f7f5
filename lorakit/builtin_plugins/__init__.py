"""lorakit's own plugins, registered through the same hooks as third-party ones.

- ``transformers_loader``: the default backend (Transformers + PEFT, bitsandbytes 8/4-bit).
- ``autogptq_loader`` + ``gptq_engine``: GPTQ checkpoints on the GPTQModel engine.
- ``formatters``: the shipped dataset formats and the chat-template formatter.

Like a plugin package, each imports nothing of lorakit but ``lorakit`` and ``lorakit.api``; no other
module of lorakit imports them (only :mod:`lorakit.plugin.manager` names them, as strings).
"""
