"""lorakit-gptq-monkeypatch: train and stack LoRAs on 4-bit GPTQ models with pure-PyTorch layers.

The plugin registers the ``gptq_monkeypatch`` loader, offers it for GPTQ checkpoints when no engine
loader claims them first, and, through ``prepare_model``, swaps the engine's quantized layers for
:class:`~lorakit_gptq_monkeypatch.layer.GPTQLinear` when the ``transformers`` loader opened a GPTQ
checkpoint (so LoRAs trained there get correct gradients). Nothing here imports torch at import
time: ``lorakit --help`` loads every plugin.
"""

from __future__ import annotations

import lorakit

__version__ = "0.1.0"

NAME = "gptq_monkeypatch"


@lorakit.hookimpl
def register_loaders(register):
    from lorakit_gptq_monkeypatch.loader import GPTQMonkeypatchLoader

    register(GPTQMonkeypatchLoader())


@lorakit.hookimpl
def resolve_loader(model_path, options):
    from lorakit.api import is_gptq_checkpoint

    return NAME if is_gptq_checkpoint(model_path) else None


@lorakit.hookimpl
def prepare_model(model, loader_name, model_path):
    # Only the generic loader: the autogptq loader promises the engine's own kernels, and our own
    # loader builds GPTQLinear layers already.
    if loader_name != "transformers" or not model_path:
        return
    from lorakit.api import is_gptq_checkpoint

    if not is_gptq_checkpoint(model_path):
        return
    from lorakit_gptq_monkeypatch.patching import patch_engine_layers

    patch_engine_layers(model, model_path)
