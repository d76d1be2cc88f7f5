"""lorakit-exllama: load EXL2/GPTQ models on ExLlamaV2 (CUDA) and attach a LoRA through ExLlamaV2Lora.

Importing this module imports neither torch nor exllamav2 (``lorakit --help`` loads every plugin);
on a machine without CUDA the loader is listed as unavailable with the reason.
"""

from __future__ import annotations

import lorakit

__version__ = "0.1.0"


@lorakit.hookimpl
def register_loaders(register):
    from lorakit_exllama.loader import ExLlamaLoader

    register(ExLlamaLoader())


@lorakit.hookimpl
def resolve_loader(model_path, options):
    # EXL2 checkpoints can only run here; GPTQ ones are left to the GPTQ loaders unless asked for.
    from lorakit_exllama.loader import NAME, is_exl2_checkpoint

    return NAME if is_exl2_checkpoint(model_path) else None
