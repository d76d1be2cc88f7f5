"""What the user asked a loader for: precision, quantization, device, safety switches, purpose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lorakit.errors import UsageError


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
