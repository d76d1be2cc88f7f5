"""The public API for plugin authors: loader backends and dataset formatters.

A third-party plugin package (and each of lorakit's own built-in plugins) imports nothing of
lorakit but :mod:`lorakit` (for ``hookimpl``) and this module; an import-linter contract in
``pyproject.toml`` holds them to it. Everything here is import-cheap (no torch at import time).
``docs/plugins.md`` walks through a complete loader written against it.

Loader backends
    :class:`Loader` (name, capabilities, requires, ``session_class``), :class:`Session` (the loaded
    base; a backend implements ``load_base`` and the ``_attach``/``_detach``/``_set_weight``/
    ``_activate`` primitives; the base class enforces the capability record and owns reloading and
    the ``prepare_model`` hook), :class:`PeftSession` (a transformers model with LoRAs through PEFT,
    plain LoRAs folded into the weights for inference: override ``load_base`` only),
    :func:`load_pretrained` (a Hugging Face folder as :class:`LoadOptions` say), :class:`Capabilities`,
    :class:`Availability`, :class:`AttachedLora`, :class:`ActionReport`, :class:`AdapterInfo` (what
    the pre-flight read from an adapter folder), :func:`pick_device`, :func:`torch_dtype`.

Quantized checkpoints
    :func:`is_gptq_checkpoint`, :func:`read_gptq_settings`, :class:`GPTQSettings`,
    :func:`refuse_bitsandbytes` (a bitsandbytes flag on an already quantized checkpoint, said plainly).

Dataset formatters
    :class:`Formatter` (the protocol ``register_formatters`` expects), :class:`Rendered`,
    :class:`RowError`, :class:`FormatFileFormatter` (text-generation-webui format files),
    :class:`ChatTemplateFormatter`, :func:`shipped_formatters`.

Serving engines
    :class:`ServeEngine` (what ``register_serve_engines`` expects), :class:`ServeRequest` (what
    ``lorakit serve`` hands the chosen engine) and :func:`serve_openai` (lorakit's own engine:
    OpenAI API, continuous batching, adapters per request).

Hub ids
    :func:`resolve_model` and :func:`resolve_lora`: MODEL / ``--lora`` text (a folder, a name under
    ``$LORAKIT_HOME``, or a hub id ``ORG/NAME[:REVISION]``, fetched once through the download store)
    -> the folder on disk.

Errors and output
    :class:`LorakitError` and its subclasses (``message`` + ``hint``, shown as one line);
    :func:`quiet_libraries` and :func:`silenced_stdout` keep third-party chatter off the terminal.
"""

from lorakit import hookimpl
from lorakit.errors import (
    AdapterError,
    CapabilityError,
    LorakitError,
    ModelNotFound,
    PluginError,
    UsageError,
)
from lorakit.hub.resolve import resolve_lora, resolve_model
from lorakit.loaders.capabilities import Availability, Capabilities
from lorakit.loaders.devices import pick_device, torch_dtype
from lorakit.loaders.options import LoadOptions
from lorakit.loaders.peft_session import PeftSession
from lorakit.loaders.pretrained import load_pretrained
from lorakit.loaders.session import ActionReport, AttachedLora, Loader, Session
from lorakit.output.quiet import quiet_libraries, silenced_stdout
from lorakit.serving.engines import ServeEngine, ServeRequest
from lorakit.serving.server import serve as serve_openai
from lorakit.store.adapters import AdapterInfo
from lorakit.store.gptq_checkpoint import (
    GPTQSettings,
    is_gptq_checkpoint,
    read_gptq_settings,
    refuse_bitsandbytes,
)
from lorakit.training.chat import ChatTemplateFormatter
from lorakit.training.formats import FormatFileFormatter, shipped_formatters
from lorakit.training.formatters import Formatter, Rendered, RowError

__all__ = [
    "ActionReport", "AdapterError", "AdapterInfo", "AttachedLora", "Availability", "Capabilities", "CapabilityError",
    "ChatTemplateFormatter", "FormatFileFormatter", "Formatter", "GPTQSettings", "LoadOptions", "Loader",
    "LorakitError", "ModelNotFound", "PeftSession", "PluginError", "Rendered", "RowError", "ServeEngine", "ServeRequest", "Session", "UsageError",
    "hookimpl", "is_gptq_checkpoint", "load_pretrained", "pick_device", "quiet_libraries", "read_gptq_settings",
    "refuse_bitsandbytes", "resolve_lora", "resolve_model", "serve_openai", "shipped_formatters", "silenced_stdout", "torch_dtype",
]
