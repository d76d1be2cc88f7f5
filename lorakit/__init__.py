"""lorakit: a plugin-based toolkit for LoRA adapters on causal language models.

Plugins implement hooks with the ``hookimpl`` marker re-exported here::

    import lorakit

    @lorakit.hookimpl
    def register_loaders(register):
        register(MyLoader())

This module must stay import-cheap: ``lorakit --help`` imports it and must not pull in torch.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("lorakit")

__all__ = ["__version__", "hookimpl"]
