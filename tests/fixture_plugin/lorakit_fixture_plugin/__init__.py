"""A throwaway third-party plugin: one loader (single LoRA, reload to remove) and one command."""

import click

import lorakit
from lorakit.capabilities import Capabilities


def _make_loader():
    # Built lazily so that importing this plugin never imports torch.
    from lorakit.plugins.transformers_loader import TransformersLoader

    class FixtureLoader(TransformersLoader):
        name = "fixture-single"
        description = "Transformers with one LoRA at a time, removal by reload (test fixture)"
        capabilities = Capabilities(max_loras=1, per_lora_weights=False, removal="reload", precisions=("fp32",), devices=("cpu",))

    return FixtureLoader()


@lorakit.hookimpl
def register_loaders(register):
    register(_make_loader())


@lorakit.hookimpl
def register_commands(cli):
    @cli.command(name="fixture-hello")
    def fixture_hello():
        """Say hello from the fixture plugin."""
        click.echo("hello from fixture plugin")
