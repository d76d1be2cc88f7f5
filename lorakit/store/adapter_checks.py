"""What an adapter must be on its own, whatever base it meets: consistent ranks and finite values.

Both rules run in the pre-flight every command shares, so an adapter that cannot work is refused
with one line before any weight loads, the same way by ``generate``, ``apply``, ``eval`` and ``merge``:

- :func:`check_ranks` (headers only, from :func:`lorakit.store.adapters.read_adapter`): each
  ``lora_A`` [r, in] / ``lora_B`` [out, r] pair agrees on r, and r is what ``adapter_config.json``
  says (``r``, or its ``rank_pattern`` entry for that module). PEFT refuses such an adapter while
  loading it; lorakit's folded path would otherwise scale it by the wrong alpha / r, or fail with a
  shape error at the first forward pass.
- :func:`check_finite` (reads the values): no NaN or Inf. Such an adapter turns every output into
  NaN (empty text, a probe that measures nothing). ``merge`` applies the same rule to what it merges.

This module reads an :class:`~lorakit.store.adapters.AdapterInfo` by duck typing (``path``,
``config``, ``shapes``, ``weights_file``, ``is_pickle``) so that ``adapters`` can call it without an
import cycle.
"""

from __future__ import annotations

import re

from lorakit.errors import AdapterError
from lorakit.store.families import is_param_wrapper

PREFIX = "base_model.model."
LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
    r"(?:\.(?P<adapter>[^.]+))?(?:\.(?P<leaf>weight|bias))?$"
)
_PAIRS = (("lora_A", "lora_B"), ("lora_embedding_A", "lora_embedding_B"))


def pattern_value(patterns: dict, module: str, default):
    """PEFT's ``get_pattern_key``: a pattern matches when it is a dotted suffix (regex) of the module name."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def split_key(key: str) -> tuple[str, str, str] | None:
    """``(module, part, leaf)`` of a LoRA tensor name (``leaf`` is weight or bias), else ``None``."""
    match = LORA_KEY.match(key.removeprefix(PREFIX))
    if match is None:
        return None
    leaf, adapter = match["leaf"], match["adapter"]
    if leaf is None and adapter in ("weight", "bias"):
        leaf = adapter
    return match["module"], match["part"], leaf or "weight"


def _label(info) -> str:
    return f"adapter '{info.path.name}'"


def check_ranks(info) -> None:
    """Refuse A/B pairs whose ranks disagree with each other or with the config (headers only)."""
    pairs: dict[str, dict[str, tuple[str, list[int]]]] = {}
    for key, shape in info.shapes.items():
        parts = split_key(key)
        if parts is not None and parts[2] == "weight" and parts[1] != "lora_magnitude_vector":
            pairs.setdefault(parts[0], {})[parts[1]] = (key, list(shape))
    config = info.config
    configured = config.get("r")
    label = _label(info)
    for module in sorted(pairs):
        found = pairs[module]
        for a_part, b_part in _PAIRS:
            if a_part not in found and b_part not in found:
                continue
            if a_part not in found or b_part not in found:
                have, missing = (a_part, b_part) if a_part in found else (b_part, a_part)
                raise AdapterError(f"{label} is incomplete: {module} has {have} but no {missing}", "re-save or re-download the adapter")
            (a_key, a_shape), (b_key, b_shape) = found[a_part], found[b_part]
            if len(a_shape) < 2 or len(b_shape) < 2:
                raise AdapterError(f"{label} has a malformed {a_part} on {module} (shapes {a_shape} and {b_shape})", "re-save or re-download the adapter")
            a_rank, b_rank = a_shape[0], b_shape[1]
            if a_rank != b_rank:
                raise AdapterError(
                    f"{label} is inconsistent: on {module} {a_part} has rank {a_rank} {a_shape} but {b_part} has rank {b_rank} {b_shape}",
                    "the two halves come from different adapters; re-save or re-download it",
                )
            if is_param_wrapper(module, config.get("target_parameters")):
                continue  # a LoRA on a 3-D expert weight: A holds rank x experts rows (checked against the base when merged)
            if isinstance(configured, int) and not isinstance(configured, bool):
                expected = pattern_value(config.get("rank_pattern") or {}, module, configured)
                if isinstance(expected, int) and a_rank != expected:
                    where = "its rank_pattern" if expected != configured else "adapter_config.json"
                    raise AdapterError(
                        f"{label}: {where} says r={expected} but its tensors have rank {a_rank} ({a_key} is {a_shape})",
                        "the config does not belong to these weights (the scale alpha/r would be wrong); re-save or re-download the adapter",
                    )


def all_finite(tensor) -> bool:
    """Whether every value is finite. The sum is NaN or Inf when any value is (one pass, nothing allocated);
    a finite tensor whose sum overflows is settled by the exact element-wise check."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    if bool(tensor.sum().isfinite()):
        return True
    return bool(tensor.isfinite().all())


def _tensors(info):
    """``(name, tensor)`` pairs of the adapter's weight file, one at a time for safetensors."""
    if info.is_pickle:
        from lorakit.store.pickles import load_pickle

        yield from load_pickle(info.weights_file, f"adapter '{info.path.name}'").items()
        return
    from safetensors import safe_open

    with safe_open(str(info.weights_file), framework="pt") as handle:
        for name in handle.keys():
            yield name, handle.get_tensor(name)


def check_finite(info, state: dict | None = None) -> None:
    """Refuse an adapter holding NaN or Inf; ``state`` is its tensors when the caller has loaded them."""
    items = state.items() if state is not None else _tensors(info)
    for name, tensor in items:
        if not all_finite(tensor):
            raise AdapterError(
                f"{_label(info)} holds NaN or Inf values (in {name}), so every output it touches would be NaN",
                "it comes from a diverged training run: retrain it, or use an earlier checkpoint",
            )
