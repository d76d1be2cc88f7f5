"""``--compare base,A,A:0.5,A+B:0.3`` -> the configurations to score, and how to switch between them.

Every LoRA named anywhere is attached once; each configuration then activates its own set with
its own weights (``Session.only`` + ``Session.set_weight``), so the model is loaded once and all
configurations see the very same token windows. A loader that cannot hold all of them at once
is driven by attaching and removing LoRAs per configuration instead.

A name in ``--compare`` is one of the ``--lora`` entries (by what was typed or by its folder name;
it then takes that entry's weight unless the item gives one), or any adapter folder or name under
``$LORAKIT_HOME/loras``. Without ``--compare`` there is one configuration: the ``--lora`` set as
given (the bare base when there is none).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lorakit.errors import UsageError
from lorakit.hub.resolve import resolve_lora
from lorakit.store.lora_spec import parse_lora, refuse_repeats

BASE = "base"


@dataclass
class LoraRef:
    path: Path  # resolved adapter folder
    typed: str  # as the user first named it
    default_weight: float = 1.0
    session_name: str = ""  # filled in once the session names it

    @property
    def key(self) -> str:
        return str(self.path.resolve())


@dataclass
class EvalConfig:
    terms: list[tuple[LoraRef, float]] = field(default_factory=list)
    typed: str = ""  # the --compare item; the label when two adapters share a folder name

    @property
    def identity(self) -> tuple:
        return tuple((ref.key, weight) for ref, weight in self.terms)

    @property
    def label(self) -> str:
        if self.typed:
            return self.typed
        if not self.terms:
            return BASE
        return "+".join(_short(ref) + (f":{weight:g}" if weight != 1.0 else "") for ref, weight in self.terms)


def _short(ref: LoraRef) -> str:
    return ref.typed if "/" not in ref.typed and "\\" not in ref.typed else ref.path.name


class _Refs:
    """The distinct adapters of a run, in the order they were first named."""

    def __init__(self):
        self.items: list[LoraRef] = []

    def add(self, typed: str, weight: float = 1.0) -> LoraRef:
        path = resolve_lora(typed)
        for ref in self.items:
            if ref.key == str(path.resolve()):
                return ref
        ref = LoraRef(path, typed, weight)
        self.items.append(ref)
        return ref

    def find(self, name: str) -> LoraRef | None:
        for ref in self.items:
            if name in (ref.typed, ref.path.name):
                return ref
        return None


def build_configs(lora_texts, compare: str | None) -> tuple[list[EvalConfig], list[LoraRef]]:
    refs = _Refs()
    given = []
    for text in lora_texts or ():
        spec = parse_lora(text)
        ref = refs.add(spec.name, spec.weight)
        given.append((ref, spec.weight))
    _check_unique(given, "--lora")
    if not compare:
        return [EvalConfig(given)], refs.items
    configs: list[EvalConfig] = []
    for item in compare.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"--compare '{compare}' has an empty item", "write e.g. --compare base,my-lora,my-lora:0.5")
        config = EvalConfig() if item == BASE else EvalConfig([_term(refs, part, item) for part in item.split("+")])
        _check_unique(config.terms, f"--compare item '{item}'")
        if any(other.identity == config.identity for other in configs):
            continue  # listed twice: scored once
        if any(other.label == config.label for other in configs):
            config.typed = item  # e.g. a/lora and b/lora: both would read "lora"
        configs.append(config)
    return configs, refs.items


def _term(refs: _Refs, text: str, item: str) -> tuple[LoraRef, float]:
    text = text.strip()
    if not text:
        raise UsageError(f"--compare item '{item}' has an empty part around '+'")
    spec = parse_lora(text)
    explicit = spec.text != spec.name
    known = refs.find(spec.name)
    if known is not None:
        return known, spec.weight if explicit else known.default_weight
    return refs.add(spec.name), spec.weight


def _check_unique(terms, where: str) -> None:
    refuse_repeats([(ref.typed, ref.path) for ref, _ in terms], where)


class Switcher:
    """Puts a session into one configuration at a time and restores it afterwards."""

    def __init__(self, session, refs: list[LoraRef], all_attached: bool):
        self.session = session
        self.refs = refs
        self.all_attached = all_attached

    @contextlib.contextmanager
    def activate(self, config: EvalConfig) -> Iterator[None]:
        session = self.session
        if not self.all_attached:
            self._swap_in(config)
        names = [ref.session_name for ref, _ in config.terms]
        with session.only(names):
            previous = []
            try:
                for ref, weight in config.terms:
                    lora = session.find(ref.session_name)
                    if lora.weight != weight:
                        previous.append((ref.session_name, lora.weight))
                        session.set_weight(ref.session_name, weight)
                yield
            finally:
                for name, weight in reversed(previous):
                    session.set_weight(name, weight)

    def _swap_in(self, config: EvalConfig) -> None:
        wanted = {ref.session_name: (ref, weight) for ref, weight in config.terms}
        for name in list(self.session.names()):
            if name not in wanted:
                self.session.remove_lora(name)
        for name, (ref, weight) in wanted.items():
            if name not in self.session.names():
                self.session.add_lora(name, ref.path, weight)
