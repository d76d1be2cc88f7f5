"""``lorakit apply``: load a base through a loader, attach LoRAs, and show what each one changes."""

from __future__ import annotations

import json

import click

from lorakit.commands.options import (
    build_load_options,
    build_sampling,
    load_options,
    lora_option,
    model_argument,
    sampling_options,
)


@click.command()
@model_argument
@lora_option
@click.option("--interactive", "-i", is_flag=True, help="Open a session: add, remove, weight, list, generate (chat turns), probe.")
@click.option("--no-probe", is_flag=True, help="Skip measuring whether each LoRA changes the output.")
@click.option("--json", "as_json", is_flag=True, help="Print what was attached and measured as JSON on stdout.")
@sampling_options
@load_options
def apply(model, loras, interactive, no_probe, as_json, loader_name, **kwargs):
    """Attach LoRAs to MODEL through a loader backend, honouring its capabilities.

    Each adapter is checked against the base before any weight loads (architecture, sizes,
    vocabulary, module names, tensor shapes). After attaching, lorakit measures on a few probe
    prompts whether each LoRA changes the model's output and flags one that changes nothing.

    \b
    Examples:
      lorakit apply --lora my-lora --lora other:0.5
      lorakit apply --loader transformers --load-in-8bit --lora my-lora -i
    """
    from lorakit.inference import probe
    from lorakit.inference.planning import open_session
    from lorakit.output.console import info, warn

    settings = build_sampling(kwargs)  # used by -i's generate; checked first either way
    options = build_load_options(kwargs)
    session, plan = open_session(model, loras, loader_name, options)
    effects = []
    if session.loras and not no_probe:
        effects = probe.measure(session)
        for effect in effects:
            (info if effect.changes_output else warn)(effect.describe())
    if as_json:
        click.echo(json.dumps({
            "model": str(plan.model_path),
            "loader": plan.loader.name,
            "capabilities": plan.loader.capabilities.to_dict(),
            "loras": [{"name": lora.name, "path": str(lora.path), "weight": lora.weight} for lora in session.loras],
            "effects": [effect.to_dict() for effect in effects],
        }, indent=2))
    if interactive:
        from lorakit.inference.interactive import InteractiveSession

        InteractiveSession(session, settings).run()
    elif not as_json:
        info(summary(plan, session, probed=bool(effects)))
        info("Nothing stays loaded once apply exits: add -i for a session, or pass the same --lora to generate, eval or merge.")


def summary(plan, session, probed: bool) -> str:
    """What a plain ``apply`` checked (it is a check: the loaded model goes away when it returns)."""
    loras = session.loras
    if not loras:
        return f"Checked: {plan.model_path.name} loads with the '{plan.loader.name}' loader (no LoRA given)."
    names = ", ".join(f"{lora.name}:{lora.weight:g}" for lora in loras)
    them = "it" if len(loras) == 1 else "them"
    probe_text = f", and measured what {'it changes' if len(loras) == 1 else 'each changes'}" if probed else ""
    return (f"Checked: {names} {'fits' if len(loras) == 1 else 'fit'} {plan.model_path.name}, the '{plan.loader.name}' "
            f"loader attached {them}{probe_text}.")
