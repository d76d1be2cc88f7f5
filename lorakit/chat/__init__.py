"""``lorakit chat``: the REPL, its slash commands and line input, and the engine for a server (``--url``).

The in-process engine lives in :mod:`lorakit.inference.chat_engine` (``apply -i`` shares it).
"""
