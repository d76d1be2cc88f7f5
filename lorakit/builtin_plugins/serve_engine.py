"""The built-in ``lorakit`` serving engine, registered through the same hook as plugin engines."""

from __future__ import annotations

import lorakit
from lorakit.api import ServeEngine, serve_openai


@lorakit.hookimpl
def register_serve_engines(register):
    register(ServeEngine("lorakit", "lorakit's own: continuous batching, per-row LoRAs and mixtures, folded hot adapter", serve_openai))
