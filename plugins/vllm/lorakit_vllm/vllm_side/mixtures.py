"""Adapter names as lorakit writes them, and weighted mixtures folded into one stacked-rank LoRA.

This file runs in two interpreters: lorakit's (for ``--lora NAME:W`` at start-up and the tests) and
vLLM's own venv (through the resolver), so it imports nothing of lorakit, only the standard library,
``torch`` and ``safetensors``, and those only inside the functions that need them.

vLLM applies one adapter per request. A mixture ``a:0.7+b:0.3`` means lorakit's
``W + sum_i w_i * s_i * B_i A_i`` (``s_i`` = alpha/r, or alpha/sqrt(r) with rsLoRA, per module as
``rank_pattern``/``alpha_pattern`` say), which is exactly one LoRA of rank ``sum_i r_i``:
A = [A_1; A_2; ...] stacked on the rank axis, B = [w_1 s_1 B_1, w_2 s_2 B_2, ...] side by side, with
alpha = r (scale 1). A module that only some parts target gets zero blocks from the others.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "base_model.model."
WEIGHT_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
_WEIGHT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# '+' joins parts, except the '+' of an exponent such as 1e+3.
_PLUS = re.compile(r"(?<![0-9.][eE])\+")
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<side>[AB])(?:\.[^.]+)?\.weight$")


class MixtureError(ValueError):
    """A mixture that cannot be folded; the message is one line saying what and why."""


@dataclass(frozen=True)
class Part:
    name: str
    weight: float | None = None  # None: not written; the adapter's default weight (1 unless --lora gave one)


def parse_mixture(text: str) -> list[Part]:
    """``NAME[:W](+NAME[:W])*`` -> parts; a name may contain ':' (the weight is the last part)."""
    parts = []
    for piece in _PLUS.split(text.strip()):
        piece = piece.strip()
        head, sep, tail = piece.rpartition(":")
        if sep and _WEIGHT.match(tail):
            weight = float(tail)
            if not head or not math.isfinite(weight):
                raise MixtureError(f"'{piece}' in '{text}' needs a name and a finite weight")
            parts.append(Part(head, weight))
        elif piece:
            parts.append(Part(piece))
        else:
            raise MixtureError(f"'{text}' has an empty part (write a:0.7+b:0.3)")
    names = [part.name for part in parts]
    if len(set(names)) != len(names):
        raise MixtureError(f"'{text}' names an adapter twice (give it once with the summed weight)")
    return parts


def safe_folder(loras_dir: Path, name: str) -> Path | None:
    """The folder under ``loras_dir`` that ``name`` means (``org/name`` -> ``org_name``), never outside it."""
    if not name or name.startswith(("/", "\\", "~")) or "\\" in name or "\x00" in name:
        return None
    pieces = name.split("/")
    if any(piece in ("", ".", "..") for piece in pieces) or len(pieces) > 2:
        return None
    for candidate in (loras_dir / name, loras_dir / name.replace("/", "_")):
        # Lexically inside loras_dir (no '..', no absolute part); a symlink placed there is the user's choice.
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def adapter_rank_bound(folder: Path) -> int:
    """The largest rank an adapter folder uses anywhere (``r`` and its ``rank_pattern``)."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    return max([int(config.get("r") or 0), *(int(v) for v in (config.get("rank_pattern") or {}).values())])


def _match(pattern: dict, module: str):
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return None


def _scale(config: dict, module: str, rank: int) -> float:
    alpha = _match(config.get("alpha_pattern"), module)
    alpha = float(config.get("lora_alpha", rank) if alpha is None else alpha)
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _refuse_unsupported(folder: Path, config: dict, keys) -> None:
    why = None
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        why = f"it is a {config.get('peft_type')} adapter, not a LoRA"
    elif config.get("use_dora"):
        why = "it is a DoRA adapter (vLLM has no DoRA)"
    elif config.get("bias", "none") != "none" or config.get("lora_bias"):
        why = "it trains biases"
    elif config.get("modules_to_save"):
        why = "it saves whole modules (modules_to_save)"
    elif any("lora_embedding" in key or "lora_magnitude" in key for key in keys):
        why = "it has embedding or magnitude LoRA weights"
    if why:
        raise MixtureError(f"cannot mix the adapter '{folder.name}': {why}")


def _read(folder: Path):
    from safetensors.torch import load_file

    config = json.loads((folder / CONFIG_FILE).read_text())
    weights_path = folder / WEIGHT_FILE
    if not weights_path.is_file():
        raise MixtureError(f"cannot mix the adapter '{folder.name}': it has no {WEIGHT_FILE} (safetensors only)")
    tensors = load_file(str(weights_path))
    _refuse_unsupported(folder, config, tensors)
    modules: dict[str, dict[str, object]] = {}
    for key, tensor in tensors.items():
        found = _KEY.match(key)
        if not found:
            raise MixtureError(f"cannot mix the adapter '{folder.name}': unexpected tensor '{key}'")
        module = found["module"].removeprefix(PREFIX)
        modules.setdefault(module, {})[found["side"]] = tensor.float()
    if not modules or any(set(sides) != {"A", "B"} for sides in modules.values()):
        raise MixtureError(f"cannot mix the adapter '{folder.name}': every module needs lora_A and lora_B")
    return config, modules


def fold(sources: list[tuple[Path, float]], out: Path) -> Path:
    """Write one PEFT LoRA folder at ``out`` equal to the weighted sum of ``sources`` (folder, weight)."""
    import torch
    from safetensors.torch import save_file

    read = [(folder, weight, *_read(folder)) for folder, weight in sources]
    fan = {bool(config.get("fan_in_fan_out")) for _, _, config, _ in read}
    if len(fan) > 1:
        raise MixtureError("cannot mix adapters saved with and without fan_in_fan_out")
    blocks = [max(module["A"].shape[0] for module in modules.values()) for _, _, _, modules in read]
    rank = sum(blocks)
    names = sorted({module for _, _, _, modules in read for module in modules})
    tensors = {}
    for module in names:
        shapes = next((modules[module]["A"].shape[1], modules[module]["B"].shape[0]) for *_, modules in read if module in modules)
        a_parts, b_parts = [], []
        for (folder, weight, config, modules), block in zip(read, blocks):
            a = torch.zeros(block, shapes[0])
            b = torch.zeros(shapes[1], block)
            if module in modules:
                lora_a, lora_b = modules[module]["A"], modules[module]["B"]
                if (lora_a.shape[1], lora_b.shape[0]) != shapes:
                    raise MixtureError(f"cannot mix: '{folder.name}' has other shapes for {module} than the other parts")
                r = lora_a.shape[0]
                a[:r] = lora_a
                b[:, :r] = lora_b * (weight * _scale(config, module, r))
            a_parts.append(a)
            b_parts.append(b)
        tensors[f"{PREFIX}{module}.lora_A.weight"] = torch.cat(a_parts, 0).contiguous()
        tensors[f"{PREFIX}{module}.lora_B.weight"] = torch.cat(b_parts, 1).contiguous()
    first = read[0][2]
    config = {
        "peft_type": "LORA", "task_type": first.get("task_type", "CAUSAL_LM"),
        "base_model_name_or_path": first.get("base_model_name_or_path"), "r": rank, "lora_alpha": rank,
        "target_modules": sorted({module.rsplit(".", 1)[-1] for module in names}), "lora_dropout": 0.0,
        "bias": "none", "fan_in_fan_out": fan.pop(), "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {},
        "inference_mode": True,
    }
    made_of = [{"folder": str(folder), "weight": weight} for folder, weight, _, _ in read]
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed: a reader never sees half a folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(tensors, str(staging / WEIGHT_FILE))
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        (staging / "lorakit_mixture.json").write_text(json.dumps(made_of, indent=2))
        try:
            os.rename(staging, out)
        except OSError:
            if not (out / CONFIG_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def cached_fold(sources: list[tuple[Path, float]], cache_dir: Path) -> Path:
    """The folded mixture in ``cache_dir``, keyed by the parts, their weights and their weight files."""
    key = []
    for folder, weight in sources:
        stat = (folder / WEIGHT_FILE).stat() if (folder / WEIGHT_FILE).is_file() else None
        key.append([str(folder.resolve()), repr(float(weight)), stat and stat.st_size, stat and stat.st_mtime_ns])
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    out = cache_dir / f"mix-{digest}"
    if (out / CONFIG_FILE).is_file() and (out / WEIGHT_FILE).is_file():
        return out
    return fold(sources, out)
