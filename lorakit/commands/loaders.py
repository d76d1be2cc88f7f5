"""``lorakit loaders``: every loader backend and its LoRA capability record."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON on stdout.")
def loaders(as_json):
    """List loader backends, their LoRA capabilities, and whether they can run here."""
    from lorakit.loaders.registry import all_loaders

    records = [loader.record() for loader in all_loaders().values()]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Loader backends")
    for column in ("loader", "LoRAs at once", "weights", "removal", "merge", "train", "precisions / quant", "devices", "available here"):
        table.add_column(column)
    for rec in records:
        table.add_row(
            rec["name"],
            "any" if rec["max_loras"] is None else str(rec["max_loras"]),
            "yes" if rec["per_lora_weights"] else "no",
            rec["removal"],
            "yes" if rec["merge"] else "no",
            "yes" if rec["train"] else "no",
            ", ".join(rec["precisions"] + rec["quantizations"]),
            ", ".join(rec["devices"]),
            "yes" if rec["available"] else f"no: {rec['reason']}",
        )
    import sys

    Console(width=None if sys.stdout.isatty() else 200).print(table)
