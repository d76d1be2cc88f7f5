"""From command-line arguments to a loaded session: resolve, plan, pre-flight, load, attach.

Everything that can be checked without loading weights is checked first, so a wrong adapter or an
impossible LoRA set fails in a second with one line, not after the model has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorakit.hub.resolve import resolve_lora, resolve_model
from lorakit.loaders.options import LoadOptions
from lorakit.loaders.registry import check_loader_name, check_lora_plan, choose_loader
from lorakit.loaders.session import Loader, Session
from lorakit.output.console import info, warn
from lorakit.store.adapter_checks import check_finite
from lorakit.store.adapters import AdapterInfo, read_adapter
from lorakit.store.legacy import LEGACY_KEYS
from lorakit.store.lora_spec import (
    LoraSpec,
    display_name,
    parse_loras,
    refuse_repeats,
)
from lorakit.store.preflight import check_adapter_fits


@dataclass
class PlannedLora:
    spec: LoraSpec
    name: str
    path: Path
    adapter: AdapterInfo


@dataclass
class Plan:
    model_path: Path
    loader: Loader
    loras: list[PlannedLora] = field(default_factory=list)

    def trained_templates(self) -> list[str]:
        return [lora.adapter.prompt_format.get("template", "") for lora in self.loras if lora.adapter.prompt_format]


def _planned(spec: LoraSpec, path: Path, options: LoadOptions, used: set[str]) -> PlannedLora:
    adapter = read_adapter(path, allow_pickle=options.allow_pickle)
    name = display_name(spec, path)
    if adapter.is_pickle or LEGACY_KEYS.keys() & adapter.config.keys():
        # Said once, in lorakit's words (PEFT's own "Unexpected keyword arguments" warning is filtered).
        warn(f"'{spec.name}' is a legacy adapter ({'pickle weights' if adapter.is_pickle else 'old config keys'}): "
             f"`lorakit convert {spec.name}{' --allow-pickle' if adapter.is_pickle else ''}` rewrites it for the fast path")
    base, suffix = name, 2
    while name in used:
        name, suffix = f"{base}-{suffix}", suffix + 1
    used.add(name)
    return PlannedLora(spec, name, path, adapter)


def plan_loras(lora_texts, options: LoadOptions, taken=()) -> list[PlannedLora]:
    """``--lora NAME[:WEIGHT]`` texts -> adapters found and read (names unique, also against ``taken``)."""
    used = set(taken)
    found = [(spec, resolve_lora(spec.name)) for spec in parse_loras(lora_texts)]
    refuse_repeats([(spec.name, path) for spec, path in found])
    return [_planned(spec, path, options, used) for spec, path in found]


def plan_paths(paths, options: LoadOptions) -> list[PlannedLora]:
    """Adapter folders already resolved (weight 1) -> adapters read, named as ``plan_loras`` names them."""
    used: set[str] = set()
    return [_planned(LoraSpec(str(path), str(path)), Path(path), options, used) for path in paths]


def check_plan(plan: Plan, options: LoadOptions) -> None:
    """Everything about the LoRA set that can be refused before a weight loads."""
    check_lora_plan(plan.loader, [lora.spec.weight for lora in plan.loras])
    for lora in plan.loras:
        check_planned_lora(plan.loader, lora, plan.model_path, options)


def check_planned_lora(loader: Loader, lora: PlannedLora, model_path: Path, options: LoadOptions) -> None:
    """The backend's own refusals, the adapter against the base (sizes, names, signature), then its values."""
    loader.check_adapter(lora.adapter)
    for message in check_adapter_fits(lora.adapter, model_path, options.trust_remote_code):
        warn(message)
    check_finite(lora.adapter)


def make_plan(model: str | None, lora_texts, loader_name: str | None, options: LoadOptions) -> Plan:
    loras = plan_loras(lora_texts, options)  # cheap checks on the adapters come first
    check_loader_name(loader_name)  # before a GGUF MODEL is converted
    model_path = resolve_model(model)
    plan = Plan(model_path, choose_loader(model_path, options, loader_name), loras)
    check_plan(plan, options)
    return plan


def open_planned(plan: Plan, options: LoadOptions, quiet: bool = False, attach: bool = True) -> Session:
    """Load the plan's base and (unless ``attach`` is false) attach its LoRAs, reusing what the plan read."""
    if not quiet:
        info(f"Loading {plan.model_path} with the '{plan.loader.name}' loader...")
    session = plan.loader.load(plan.model_path, options)
    for lora in plan.loras if attach else ():
        report = session.add_lora(lora.name, lora.path, lora.spec.weight, adapter=lora.adapter)
        if not quiet:
            info(f"Attached LoRA {lora.name} (weight {lora.spec.weight:g}) in {report.seconds * 1000:.0f} ms")
    return session


def open_session(model: str | None, lora_texts=(), loader_name: str | None = None, options: LoadOptions | None = None, quiet: bool = False) -> tuple[Session, Plan]:
    options = options or LoadOptions()
    plan = make_plan(model, lora_texts, loader_name, options)
    return open_planned(plan, options, quiet), plan
