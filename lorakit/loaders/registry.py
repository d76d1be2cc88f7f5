"""Collect registered loader backends and choose one for a model."""

from __future__ import annotations

from pathlib import Path

from lorakit.errors import CapabilityError, PluginError, UsageError
from lorakit.loaders.hints import backends_that
from lorakit.loaders.options import LoadOptions
from lorakit.loaders.session import Loader
from lorakit.plugin.host import chosen_loader_name, registered_loaders

DEFAULT_LOADER = "transformers"


def all_loaders(pm=None) -> dict[str, Loader]:
    """Every registered loader backend by name."""
    return registered_loaders(pm)


def check_loader_name(requested: str | None, pm=None) -> None:
    """Refuse a ``--loader`` name that no plugin registers (cheap: call it before any other work)."""
    if requested and requested not in all_loaders(pm):
        _refuse_unknown(requested, all_loaders(pm), explicit=True)


def _refuse_unknown(name: str, loaders: dict, explicit: bool) -> None:
    from lorakit.plugin.manager import missing_loader_reason

    installed = "installed loaders: " + (", ".join(loaders) or "none")
    reason = missing_loader_reason(name)
    if reason:
        raise (UsageError if explicit else PluginError)(reason, installed)
    if explicit:
        raise UsageError(f"unknown loader '{name}'", installed)
    raise PluginError(f"a plugin chose loader '{name}', which is not registered", "see `lorakit loaders`")


def choose_loader(model_path: Path, options: LoadOptions, requested: str | None = None, pm=None) -> Loader:
    loaders = all_loaders(pm)
    if requested:
        if requested not in loaders:
            _refuse_unknown(requested, loaders, explicit=True)
        loader = loaders[requested]
    else:
        name = chosen_loader_name(Path(model_path), options, pm) or DEFAULT_LOADER
        if name not in loaders:
            _refuse_unknown(name, loaders, explicit=False)
        loader = loaders[name]
    available = loader.availability()
    if not available.ok:
        raise CapabilityError(f"loader '{loader.name}' cannot run here: {available.reason}", "see `lorakit loaders`")
    loader.check_options(options)
    return loader


def check_lora_plan(loader: Loader, weights: list[float]) -> None:
    """Refuse, before any weight is loaded, a LoRA set the backend cannot hold."""
    caps = loader.capabilities
    if not caps.accepts(len(weights)):
        raise CapabilityError(
            f"loader '{loader.name}' takes {caps.lora_limit_text()} LoRA at a time, {len(weights)} were given",
            backends_that(lambda c: c.accepts(len(weights)), f"attach {len(weights)} LoRAs at once"),
        )
    if any(weight != 1.0 for weight in weights) and not caps.per_lora_weights:
        raise CapabilityError(
            f"loader '{loader.name}' cannot scale LoRAs (a :WEIGHT other than 1 was given)",
            backends_that(lambda c: c.per_lora_weights, "weight LoRAs"),
        )
