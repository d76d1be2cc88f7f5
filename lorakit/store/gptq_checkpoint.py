"""Recognise a GPTQ checkpoint and read its quantization settings, without torch and without weights.

A GPTQ folder says what it is in one of two places: ``quantize_config.json`` (AutoGPTQ, GPTQModel)
or ``config.json`` -> ``quantization_config`` with ``quant_method: gptq`` (transformers/optimum). Both
the built-in ``autogptq`` loader and the ``gptq_monkeypatch`` plugin read it through this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import ModelNotFound

QUANTIZE_CONFIG_FILE = "quantize_config.json"


@dataclass(frozen=True)
class GPTQSettings:
    bits: int
    group_size: int
    """``-1`` means one group over the whole input dimension."""
    desc_act: bool
    """Act-order: columns were quantized in a permuted order, so ``g_idx`` is not ``k // group_size``."""
    sym: bool
    checkpoint_format: str
    """``gptq`` (v1: stored zero points are ``zero - 1``) or ``gptq_v2`` (stored as is)."""
    source: str
    """Which file said so, for messages."""

    @property
    def zero_offset(self) -> int:
        return 1 if self.checkpoint_format == "gptq" else 0

    def describe(self) -> str:
        group = "no groups" if self.group_size == -1 else f"group size {self.group_size}"
        order = ", act-order" if self.desc_act else ""
        return f"GPTQ {self.bits}-bit, {group}{order}, {'symmetric' if self.sym else 'asymmetric'}"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelNotFound(f"{path} is not valid JSON: {error}", "re-download or re-quantize the model") from error
    return data if isinstance(data, dict) else {}


def raw_quantization_config(model_path: Path) -> tuple[dict, str] | None:
    """The quantization dict of a model folder and the file it came from, or ``None``."""
    model_path = Path(model_path)
    config_path = model_path / "config.json"
    if config_path.is_file():
        quant = _read_json(config_path).get("quantization_config")
        if isinstance(quant, dict) and quant:
            return quant, "config.json"
    quantize_path = model_path / QUANTIZE_CONFIG_FILE
    if quantize_path.is_file():
        return _read_json(quantize_path), QUANTIZE_CONFIG_FILE
    return None


def quant_method(quant: dict) -> str:
    return str(quant.get("quant_method") or quant.get("method") or "gptq").lower()


def is_gptq_checkpoint(model_path: Path) -> bool:
    found = raw_quantization_config(model_path)
    return found is not None and quant_method(found[0]) == "gptq"


def read_gptq_settings(model_path: Path) -> GPTQSettings:
    """The GPTQ settings of a model folder; one clear error when it is not a GPTQ checkpoint."""
    found = raw_quantization_config(model_path)
    if found is None:
        raise ModelNotFound(
            f"'{model_path}' is not a GPTQ checkpoint (no {QUANTIZE_CONFIG_FILE} and no quantization_config in config.json)",
            "load it with --loader transformers, or quantize it with GPTQModel first",
        )
    quant, source = found
    method = quant_method(quant)
    if method != "gptq":
        raise ModelNotFound(f"'{model_path}' is quantized with {method}, not GPTQ ({source})", "load it with a loader for that format")
    checkpoint_format = str(quant.get("checkpoint_format") or quant.get("format") or "gptq").lower()
    return GPTQSettings(
        bits=int(quant.get("bits", 4)),
        group_size=int(quant.get("group_size", 128)),
        desc_act=bool(quant.get("desc_act", False)),
        sym=bool(quant.get("sym", True)),
        checkpoint_format=checkpoint_format,
        source=source,
    )


def refuse_bitsandbytes(loader_name: str, options) -> None:
    """GPTQ weights are already quantized: a bitsandbytes flag on top of them is a mistake, said plainly."""
    from lorakit.errors import CapabilityError

    quant = options.quantization()
    if quant:
        raise CapabilityError(
            f"loader '{loader_name}' loads GPTQ checkpoints, which are already quantized; --load-in-{quant} does not apply",
            "drop the flag (or use --loader transformers with --load-in-8bit/--load-in-4bit on an unquantized model)",
        )
