"""What a loader backend is, and the session it returns: a loaded base with LoRAs attached.

A backend subclasses :class:`Loader` (declares ``name``, ``capabilities``, ``requires``) and
:class:`Session` (implements the ``_attach``/``_detach``/``_set_weight``/``_activate`` primitives).
The base ``Session`` enforces the capability record, so every backend says the same thing, the same
way, when asked for what it cannot do.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from lorakit.capabilities import Availability, Capabilities
from lorakit.errors import CapabilityError, UsageError


@dataclass
class LoadOptions:
    dtype: str = "auto"
    """``auto`` (fp32 on CPU, bf16 on CUDA when supported), ``fp32``, ``bf16`` or ``fp16``."""
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    cpu: bool = False
    trust_remote_code: bool = False
    allow_pickle: bool = False
    purpose: str = "inference"
    extra: dict[str, Any] = field(default_factory=dict)

    def quantization(self) -> str | None:
        if self.load_in_8bit and self.load_in_4bit:
            raise UsageError("--load-in-8bit and --load-in-4bit exclude each other", "choose one")
        return "8bit" if self.load_in_8bit else "4bit" if self.load_in_4bit else None


@dataclass
class AttachedLora:
    name: str
    path: Path
    weight: float = 1.0


@dataclass
class ActionReport:
    """What an add/remove did and what it cost, for the interactive session and scripts."""

    action: str
    name: str
    seconds: float
    detail: str = ""


class Loader:
    """A loader backend. Instances are registered through the ``register_loaders`` hook."""

    name: str = ""
    description: str = ""
    capabilities: Capabilities = Capabilities()
    requires: tuple[str, ...] = ()
    """Importable module names this backend needs; checked without importing them."""

    def availability(self) -> Availability:
        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            return Availability(False, "missing Python packages: " + ", ".join(missing), missing)
        return Availability(True)

    def check_options(self, options: LoadOptions) -> None:
        """Refuse precision/quantization/device combinations the backend does not support."""
        quant = options.quantization()
        if quant and quant not in self.capabilities.quantizations:
            raise CapabilityError(
                f"loader '{self.name}' cannot load in {quant}",
                "use --loader transformers for bitsandbytes 8-bit/4-bit",
            )
        if options.dtype not in ("auto", *self.capabilities.precisions):
            raise CapabilityError(
                f"loader '{self.name}' does not support --dtype {options.dtype}",
                "supported: " + ", ".join(self.capabilities.precisions),
            )

    def check_adapter(self, adapter) -> None:
        """Refuse an adapter this backend cannot attach (an :class:`lorakit.adapters.AdapterInfo`)."""

    def load(self, model_path: Path, options: LoadOptions) -> "Session":
        raise NotImplementedError

    def record(self) -> dict:
        available = self.availability()
        return {
            "name": self.name,
            "description": self.description,
            "available": available.ok,
            "reason": available.reason,
            **self.capabilities.to_dict(),
        }


class Session:
    """A base model loaded by one backend, with LoRAs attached under the backend's rules."""

    def __init__(self, loader: Loader, model_path: Path, options: LoadOptions):
        self.loader = loader
        self.model_path = Path(model_path)
        self.options = options
        self.loras: list[AttachedLora] = []
        self.model: Any = None
        self.tokenizer: Any = None

    # ---- what backends implement -------------------------------------------------------------
    def _attach(self, lora: AttachedLora) -> None:
        raise NotImplementedError

    def _detach(self, lora: AttachedLora) -> None:
        raise NotImplementedError

    def _set_weight(self, lora: AttachedLora, weight: float) -> None:
        raise NotImplementedError

    def _activate(self, names: list[str]) -> None:
        """Make exactly these attached LoRAs active (an empty list means the bare base)."""
        raise NotImplementedError

    def _reload_base(self) -> None:
        raise NotImplementedError

    def device(self) -> str:
        return "cpu"

    def forward_logits(self, input_ids, attention_mask=None):
        """Logits for a batch of token ids (a torch tensor), with the currently active LoRAs."""
        raise NotImplementedError

    def generate_ids(self, input_ids, settings, streamer=None):
        """Generate new token ids after ``input_ids`` (1 x T); returns the new ids only."""
        raise NotImplementedError

    # ---- the capability-checked API ----------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return self.loader.capabilities

    def names(self) -> list[str]:
        return [lora.name for lora in self.loras]

    def find(self, name: str) -> AttachedLora:
        for lora in self.loras:
            if lora.name == name:
                return lora
        raise UsageError(f"no LoRA named '{name}' is attached", "attached: " + (", ".join(self.names()) or "none"))

    def add_lora(self, name: str, path: Path, weight: float = 1.0) -> ActionReport:
        if name in self.names():
            raise UsageError(f"a LoRA named '{name}' is already attached", "remove it first or use another name")
        caps = self.capabilities
        if not caps.accepts(len(self.loras) + 1):
            from lorakit.loader_registry import backends_that

            raise CapabilityError(
                f"loader '{self.loader.name}' takes {caps.lora_limit_text()} LoRA at a time and "
                f"{', '.join(self.names())} is attached",
                backends_that(lambda c: c.accepts(len(self.loras) + 1), "attach several LoRAs at once"),
            )
        if weight != 1.0 and not caps.per_lora_weights:
            raise CapabilityError(
                f"loader '{self.loader.name}' cannot scale a LoRA (asked for weight {weight:g})",
                "drop the :WEIGHT or pick a loader with per-LoRA weights",
            )
        started = time.perf_counter()
        lora = AttachedLora(name, Path(path), weight)
        self._attach(lora)
        self.loras.append(lora)
        self._activate(self.names())
        return ActionReport("add", name, time.perf_counter() - started, f"weight {weight:g}")

    def remove_lora(self, name: str) -> ActionReport:
        lora = self.find(name)
        removal = self.capabilities.removal
        if removal == "unsupported":
            raise CapabilityError(
                f"loader '{self.loader.name}' cannot remove a LoRA",
                "start again without it (lorakit apply/generate with the LoRAs you want)",
            )
        started = time.perf_counter()
        if removal == "fast":
            self._detach(lora)
            self.loras.remove(lora)
            self._activate(self.names())
            detail = "detached; the base was not reloaded"
        else:
            keep = [item for item in self.loras if item is not lora]
            self._reload_base()
            self.loras = []
            for item in keep:
                self._attach(item)
                self.loras.append(item)
            self._activate(self.names())
            detail = "this backend cannot detach a LoRA, so the base model was reloaded"
        return ActionReport("remove", name, time.perf_counter() - started, detail)

    def set_weight(self, name: str, weight: float) -> ActionReport:
        lora = self.find(name)
        if not self.capabilities.per_lora_weights:
            raise CapabilityError(f"loader '{self.loader.name}' cannot change a LoRA's weight")
        started = time.perf_counter()
        self._set_weight(lora, weight)
        lora.weight = weight
        return ActionReport("weight", name, time.perf_counter() - started, f"weight {weight:g}")

    @contextlib.contextmanager
    def only(self, names: list[str] | None) -> Iterator[None]:
        """Temporarily run with just these LoRAs active (``[]`` or ``None``: the base alone)."""
        wanted = list(names or [])
        for name in wanted:
            self.find(name)
        self._activate(wanted)
        try:
            yield
        finally:
            self._activate(self.names())

    def close(self) -> None:
        self.model = None
