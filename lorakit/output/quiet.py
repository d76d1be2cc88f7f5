"""Keep third-party chatter (progress bars, known warnings) off the user's terminal.

lorakit prints its own progress on stderr; library bars and warnings come back with LORAKIT_DEBUG=1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
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
    quiet_logbar()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


@contextlib.contextmanager
def silenced_stdout():
    """Drop what a library prints on stdout while it runs (``LORAKIT_DEBUG=1``: send it to stderr)."""
    if os.environ.get("LORAKIT_DEBUG"):
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def quiet_logbar() -> None:
    """Silence logbar, GPTQModel's logger, which writes a banner, INFO and WARN lines to *stdout*.

    It must run before anything imports gptqmodel, and PEFT does so while attaching any LoRA when
    gptqmodel is installed (its GPTQ dispatcher probes for it), whichever backend loaded the model:
    so :func:`quiet_libraries` calls it for every command that loads a model; otherwise ``--json``
    output would start with a banner. Cheap when logbar is not installed.
    """
    if os.environ.get("LORAKIT_DEBUG") or importlib.util.find_spec("logbar") is None:
        return
    logging.getLogger("tokenicer").setLevel(logging.WARNING)
    with silenced_stdout():  # creating logbar's logger prints an empty line on stdout
        from logbar import LogBar

        LogBar.shared().setLevel(logging.ERROR)
