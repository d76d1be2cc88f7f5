"""Keep third-party chatter (progress bars, known warnings) off the user's terminal.

lorakit prints its own progress on stderr; library bars and warnings come back with LORAKIT_DEBUG=1.
"""

from __future__ import annotations

import logging
import os
import warnings

_NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "transformers", "peft", "accelerate", "bitsandbytes", "gptqmodel", "optimum")
_KNOWN_WARNINGS = (
    r".*is_gradient_checkpointing.*",
    r".*gemv_4bit.*",
    r".*kernels-community.*",
    r".*Enum subclass.*",
)


def quiet_logs() -> None:
    """Cheap (imports nothing heavy): call it before any library is imported."""
    if os.environ.get("LORAKIT_DEBUG"):
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(os.cpu_count() or 1, 2)))
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def quiet_libraries() -> None:
    """Also turn off transformers' own progress bars (imports transformers' logging module)."""
    quiet_logs()
    if os.environ.get("LORAKIT_DEBUG"):
        return
    from lorakit.plugins.gptq_engine import quiet_engine

    quiet_engine()  # GPTQModel logs to stdout, and PEFT imports it when attaching LoRAs
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
