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

# Loggers whose WARNING/INFO lines are library chatter; their errors still show. Among what they say:
# torchao "Failed to load .../_C_mxfp8...so" (prebuilt kernels for another torch), bitsandbytes
# "Failed to load CPU gemm_4bit_forward from kernels-community" (a hub download lorakit never wants),
# torch's _pytree "Enum subclass ... register_constant()".
_NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "transformers", "peft", "accelerate", "bitsandbytes", "gptqmodel", "optimum", "mlflow", "wandb")
# Known warnings (category, message regex), each filtered on its own: anything new still shows.
_KNOWN_WARNINGS = (
    (FutureWarning, r".*is_gradient_checkpointing.*"),  # transformers 5 renaming, raised inside PEFT/Trainer code
    (UserWarning, r".*gemv_4bit.*"),  # bitsandbytes CPU 4-bit kernel note (the repack is handled by the loader)
    (Warning, r".*kernels-community.*"),  # bitsandbytes optional hub kernels
    (Warning, r".*Enum subclass.*"),  # torch._pytree deprecation raised by torchao at import
    (UserWarning, r"The given NumPy array is not writable"),  # torch.from_numpy on gguf's read-only map (copied right away)
    (UserWarning, r".*Failed to load .*_C_.*"),  # torchao's compiled extensions, when raised as a warning
    (UserWarning, r"Unexpected keyword arguments .* for class LoraConfig"),  # 2023 adapter configs: lorakit names them itself
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
    for category, pattern in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)


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
