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
    from lorakit.loaders.listing import render_listing

    click.echo(render_listing(records), nl=False)
