"""The LoRA capability record every loader backend advertises.

Commands read this record *before* touching weights and explain what a backend cannot do, naming the
installed backends that can.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Removal = Literal["fast", "reload", "unsupported"]


@dataclass(frozen=True)
class Capabilities:
    max_loras: int | None = 1
    """How many LoRAs may be active at once; ``None`` means no fixed limit."""
    per_lora_weights: bool = False
    removal: Removal = "unsupported"
    """``fast``: detach without touching the base; ``reload``: the base must be reloaded;
    ``unsupported``: a LoRA cannot be removed at all."""
    merge: bool = False
    train: bool = False
    precisions: tuple[str, ...] = ("fp32",)
    quantizations: tuple[str, ...] = ()
    devices: tuple[str, ...] = ("cpu",)
    serve_per_request: bool = False
    """``lorakit serve`` can apply a different adapter (or mixture) per request without reloading."""
    serve_mixed_batch: bool = False
    """Requests for different adapters (and the base) can share one forward pass."""
    notes: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["precisions"] = list(self.precisions)
        data["quantizations"] = list(self.quantizations)
        data["devices"] = list(self.devices)
        return data

    def lora_limit_text(self) -> str:
        return "any number" if self.max_loras is None else str(self.max_loras)

    def accepts(self, count: int) -> bool:
        return self.max_loras is None or count <= self.max_loras


@dataclass
class Availability:
    ok: bool
    reason: str = ""
    missing: list[str] = field(default_factory=list)
