"""``lorakit plugins``: installed plugins, versions and the hooks they implement."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include lorakit's built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def plugins(show_all, as_json):
    """List installed plugins and the hooks they implement."""
    from lorakit.plugin.host import plugin_manager
    from lorakit.plugin.manager import plugin_records

    records = plugin_records(plugin_manager(), include_builtin=show_all)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("No third-party plugins installed (use --all to see the built-in ones).", err=True)
        return
    for rec in records:
        origin = "built-in" if rec["builtin"] else f"{rec['package']} {rec['version']}"
        click.echo(f"{rec['name']} ({origin}): {', '.join(rec['hooks'])}")
