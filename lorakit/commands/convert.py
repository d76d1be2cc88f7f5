"""``lorakit convert``: a legacy adapter (pickle weights, 2023 config keys) -> safetensors and a clean config."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("name", metavar="NAME")
@click.option("--allow-pickle", is_flag=True, help="Read adapter_model.bin (torch.load with weights_only=True: tensors only).")
@click.option("--json", "as_json", is_flag=True, help="Print what was converted as JSON on stdout.")
def convert(name, allow_pickle, as_json):
    """Rewrite the adapter NAME (a folder, a name under $LORAKIT_HOME/loras, or a hub id) in today's format.

    \b
    adapter_model.bin becomes adapter_model.safetensors (the pickle is read only with --allow-pickle,
    and only plain tensors are accepted); config keys of 2023 PEFT (enable_lora, merge_weights, ...)
    are dropped; a base repository that left the hub is replaced by where it lives now. What was done,
    with the source file's sha256, goes to lorakit_convert.json. The adapter then loads on the fast
    folded path with no library warning.

    \b
    Examples:
      lorakit convert tloen_alpaca-lora-7b --allow-pickle
      lorakit download tloen/alpaca-lora-7b --convert --allow-pickle
    """
    from lorakit.hub.resolve import resolve_lora
    from lorakit.output.console import err_console
    from lorakit.store.legacy import convert_adapter

    folder = resolve_lora(name)
    result = convert_adapter(folder, allow_pickle)
    console = err_console()
    for line in summary_lines(result):
        console.print(line, markup=False)
    console.print(f"Next: {next_command(folder, name)}", markup=False)
    if as_json:
        click.echo(json.dumps({
            "path": str(folder.absolute()), "written": result.written, "source": result.source, "source_sha256": result.source_sha256,
            "tensors": result.tensors, "dropped_keys": sorted(result.dropped), "base_model_before": result.base_before,
            "base_model_after": result.base_after, "next_command": next_command(folder, name),
        }, indent=2))


def summary_lines(result) -> list[str]:
    if not result.written:
        return [f"{result.folder} is already in today's format: nothing to convert"]
    lines = []
    if result.source:
        lines.append(f"Converted {result.source} (sha256 {result.source_sha256[:12]}...) to adapter_model.safetensors: {result.tensors} tensors")
    if result.dropped:
        lines.append("Dropped 2023 config keys: " + ", ".join(sorted(result.dropped)))
    if result.base_after:
        lines.append(f"Base {result.base_before} is no longer on the hub: the config now names {result.base_after}")
    return lines


def next_command(folder, name: str) -> str:
    import shlex

    from lorakit.store.legacy import live_base

    try:
        base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    except (OSError, ValueError, AttributeError):
        base = ""
    base = live_base(str(base))
    return f"lorakit generate {shlex.quote(base) + ' ' if base else ''}--lora {shlex.quote(name)} --prompt 'Hello'"
