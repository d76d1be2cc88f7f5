"""What a loader backend is, and the session it returns: a loaded base with LoRAs attached.

A backend subclasses :class:`Loader` (declares ``name``, ``capabilities``, ``requires`` and its
``session_class``) and :class:`Session` (implements :meth:`Session.load_base` and the
``_attach``/``_detach``/``_set_weight``/``_activate`` primitives). The base ``Session`` owns the
rest, the same for every backend: it enforces the capability record (so every backend says the same
thing, the same way, when asked for what it cannot do), and it owns reloading the base, firing the
``prepare_model`` hook after every load.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lorakit.errors import CapabilityError, UsageError
from lorakit.loaders.capabilities import Availability, Capabilities
from lorakit.loaders.options import LoadOptions
from lorakit.store.adapters import AdapterInfo, read_adapter


@dataclass
class AttachedLora:
    name: str
    path: Path
    weight: float = 1.0
    adapter: AdapterInfo | None = None
    """What the pre-flight read from the adapter folder (config, tensor shapes); carried, not re-read."""


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
    session_class: type[Session] | None = None
    """The :class:`Session` subclass :meth:`load` opens (or override :meth:`load`)."""

    def availability(self) -> Availability:
        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            return Availability(False, "missing Python packages: " + ", ".join(missing), missing)
        return Availability(True)

    def check_options(self, options: LoadOptions) -> None:
        """Refuse precision/quantization/device combinations the backend does not support."""
        quant = options.quantization()
        if quant and quant not in self.capabilities.quantizations:
            from lorakit.loaders.hints import backends_that

            raise CapabilityError(f"loader '{self.name}' cannot load in {quant}", backends_that(lambda c: quant in c.quantizations, f"load in {quant}"))
        if options.dtype not in ("auto", *self.capabilities.precisions):
            raise CapabilityError(
                f"loader '{self.name}' does not support --dtype {options.dtype}",
                "supported: " + ", ".join(self.capabilities.precisions),
            )

    def check_adapter(self, adapter: AdapterInfo) -> None:
        """Refuse an adapter this backend cannot attach (called before any weight loads)."""

    def load(self, model_path: Path, options: LoadOptions) -> Session:
        if self.session_class is None:
            raise NotImplementedError(f"loader '{self.name}' sets no session_class and does not override load()")
        return self.session_class.open(self, model_path, options)

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
        self._device = "cpu"

    @classmethod
    def open(cls, loader: Loader, model_path: Path, options: LoadOptions) -> Session:
        """A session with the base loaded (and ``prepare_model`` fired)."""
        session = cls(loader, model_path, options)
        session.reload_base()
        return session

    # ---- what backends implement -------------------------------------------------------------
    def load_base(self) -> tuple[Any, Any, str]:
        """Load the bare base: return ``(model, tokenizer, device)``. Called by :meth:`reload_base`."""
        raise NotImplementedError

    def release_base(self) -> None:
        """Drop everything that belongs to the loaded base (backends with more state extend this)."""
        if self.model is not None:
            self.model = None
            gc.collect()  # the old base must be gone before a new one is read

    def _attach(self, lora: AttachedLora) -> None:
        raise NotImplementedError

    def _detach(self, lora: AttachedLora) -> None:
        raise NotImplementedError

    def _set_weight(self, lora: AttachedLora, weight: float) -> None:
        raise NotImplementedError

    def _activate(self, names: list[str]) -> None:
        """Make exactly these attached LoRAs active (an empty list means the bare base)."""
        raise NotImplementedError

    def forward_logits(self, input_ids, attention_mask=None):
        """Logits for a batch of token ids (a torch tensor), with the currently active LoRAs."""
        raise NotImplementedError

    def generate_ids(self, input_ids, settings, streamer=None):
        """Generate new token ids after ``input_ids`` (1 x T); returns the new ids only."""
        raise NotImplementedError

    # ---- owned by the base class --------------------------------------------------------------
    def reload_base(self) -> None:
        """(Re)load the bare base through the backend, then let every plugin prepare it."""
        from lorakit.plugin.host import prepare_model

        self.release_base()
        self.model, self.tokenizer, self._device = self.load_base()
        prepare_model(self.model, self.loader.name, self.model_path, self.options)

    def device(self) -> str:
        return self._device

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

    def add_lora(self, name: str, path: Path, weight: float = 1.0, adapter: AdapterInfo | None = None) -> ActionReport:
        """Attach the adapter folder ``path`` as ``name``; ``adapter`` is its pre-flight record, if read."""
        if name in self.names():
            raise UsageError(f"a LoRA named '{name}' is already attached", "remove it first or use another name")
        caps = self.capabilities
        if not caps.accepts(len(self.loras) + 1):
            from lorakit.loaders.hints import backends_that

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
        if adapter is None:
            adapter = read_adapter(path, allow_pickle=self.options.allow_pickle)
        lora = AttachedLora(name, Path(path), weight, adapter)
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
            self.loras = []
            self.reload_base()
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
