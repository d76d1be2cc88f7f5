"""From command-line arguments to a loaded session: resolve, plan, pre-flight, load, attach.

Everything that can be checked without loading weights is checked first, so a wrong adapter or an
impossible LoRA set fails in a second with one line, not after the model has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorakit.adapters import AdapterInfo, read_adapter
from lorakit.console import info, warn
from lorakit.loader_api import LoadOptions, Loader, Session
from lorakit.loader_registry import check_lora_plan, choose_loader
from lorakit.lora_spec import LoraSpec, display_name, parse_loras, resolve_lora_path
from lorakit.model_resolve import resolve_model
from lorakit.preflight import check_adapter_fits


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


def plan_loras(lora_texts, options: LoadOptions) -> list[PlannedLora]:
    planned: list[PlannedLora] = []
    used: set[str] = set()
    for spec in parse_loras(lora_texts):
        path = resolve_lora_path(spec.name)
        adapter = read_adapter(path, allow_pickle=options.allow_pickle)
        name = display_name(spec, path)
        base, suffix = name, 2
        while name in used:
            name, suffix = f"{base}-{suffix}", suffix + 1
        used.add(name)
        planned.append(PlannedLora(spec, name, path, adapter))
    return planned


def make_plan(model: str | None, lora_texts, loader_name: str | None, options: LoadOptions) -> Plan:
    loras = plan_loras(lora_texts, options)  # cheap checks on the adapters come first
    model_path = resolve_model(model)
    loader = choose_loader(model_path, options, loader_name)
    check_lora_plan(loader, [lora.spec.weight for lora in loras])
    for lora in loras:
        loader.check_adapter(lora.adapter)
        for message in check_adapter_fits(lora.adapter, model_path, options.trust_remote_code):
            warn(message)
    return Plan(model_path, loader, loras)


def open_session(model: str | None, lora_texts=(), loader_name: str | None = None, options: LoadOptions | None = None, quiet: bool = False) -> tuple[Session, Plan]:
    options = options or LoadOptions()
    plan = make_plan(model, lora_texts, loader_name, options)
    if not quiet:
        info(f"Loading {plan.model_path} with the '{plan.loader.name}' loader...")
    session = plan.loader.load(plan.model_path, options)
    for lora in plan.loras:
        report = session.add_lora(lora.name, lora.path, lora.spec.weight)
        if not quiet:
            info(f"Attached LoRA {lora.name} (weight {lora.spec.weight:g}) in {report.seconds * 1000:.0f} ms")
    return session, plan
