"""What a request's ``model`` field names: the base, one adapter, or a weighted mixture.

Grammar (documented in the README)::

    model   := BASE_ID | term ("+" term)*
    term    := NAME [":" WEIGHT]          WEIGHT: a finite number, default the --lora weight or 1

``a:0.7+b:0.3`` asks for W + 0.7 (alpha_a/r_a) B_a A_a + 0.3 (alpha_b/r_b) B_b A_b, the same maths
as ``lorakit generate --lora a:0.7 --lora b:0.3``. A name may itself contain ``:`` (the weight is
what follows the last one, when it is a number); ``+`` separates terms and cannot be part of a name.
The same set may instead come as the extra body field ``"adapters": {"a": 0.7, "b": 0.3}`` with
``model`` naming the base.
"""

from __future__ import annotations

import math
import re

_WEIGHT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

Mix = tuple[tuple[str, float], ...]
"""Adapter names with their weights, sorted by name; ``()`` is the bare base."""


class MixError(ValueError):
    """A ``model`` field that does not parse; the message is shown to the client as is."""


def canonical(terms) -> Mix:
    """Sorted, duplicates refused, zero weights dropped (a zero term changes nothing)."""
    seen: dict[str, float] = {}
    for name, weight in terms:
        if name in seen:
            raise MixError(f"'{name}' appears twice in the mixture")
        if not math.isfinite(weight):
            raise MixError(f"the weight of '{name}' is not a finite number")
        seen[name] = float(weight)
    return tuple(sorted((name, weight) for name, weight in seen.items() if weight != 0.0))


def parse_mix(text: str, base_id: str, default_weight) -> Mix:
    """``text`` -> a :data:`Mix`; ``default_weight(name)`` gives a term's weight when it has none."""
    text = text.strip()
    if not text:
        raise MixError("the model name is empty")
    if text == base_id:
        return ()
    terms = []
    for part in text.split("+"):
        part = part.strip()
        if not part:
            raise MixError(f"'{text}' has an empty term (write NAME[:WEIGHT]+NAME[:WEIGHT])")
        head, sep, tail = part.rpartition(":")
        if sep and not tail.strip():
            raise MixError(f"'{part}' ends with ':' but has no weight (write NAME:WEIGHT, e.g. {head or 'a'}:0.5)")
        if sep and _WEIGHT.match(tail.strip()):
            if not head.strip():
                raise MixError(f"'{part}' has a weight but no adapter name")
            name, weight = head.strip(), float(tail)
        else:
            name, weight = part, None
        if name == base_id:
            raise MixError(f"the base '{base_id}' cannot be a term of a mixture (leave it out: the base is always there)")
        terms.append((name, default_weight(name) if weight is None else weight))
    return canonical(terms)


def parse_adapters_field(value) -> Mix:
    """The extra body field ``adapters``: ``{"name": weight, ...}`` or ``[{"name": ..., "weight": ...}]``."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list) and all(isinstance(item, dict) for item in value):
        items = [(item.get("name"), item.get("weight", 1.0)) for item in value]
    else:
        raise MixError('"adapters" must be an object {"name": weight} or a list of {"name", "weight"}')
    terms = []
    for name, weight in items:
        if not isinstance(name, str) or not name:
            raise MixError('every entry of "adapters" needs a name')
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise MixError(f'the weight of "{name}" in "adapters" must be a number')
        terms.append((name, float(weight)))
    return canonical(terms)


def mix_label(mix: Mix, base_id: str) -> str:
    if not mix:
        return base_id
    return "+".join(f"{name}:{weight:g}" for name, weight in mix)
