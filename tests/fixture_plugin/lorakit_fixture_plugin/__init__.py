"""A throwaway third-party plugin: one loader (single LoRA, reload to remove) and one command.

Written only against lorakit's public API (``lorakit`` + ``lorakit.api``), as a plugin package must be.
"""

import click

import lorakit
from lorakit.api import Capabilities, Loader, PeftSession


class FixtureLoader(Loader):
    name = "fixture-single"
    description = "Transformers with one LoRA at a time, removal by reload (test fixture)"
    capabilities = Capabilities(max_loras=1, per_lora_weights=False, removal="reload", precisions=("fp32",), devices=("cpu",))
    requires = ("torch", "transformers", "peft")
    session_class = PeftSession  # a plain Hugging Face folder through PEFT: nothing to override


@lorakit.hookimpl
def register_loaders(register):
    register(FixtureLoader())


@lorakit.hookimpl
def register_commands(cli):
    @cli.command(name="fixture-hello")
    def fixture_hello():
        """Say hello from the fixture plugin."""
        click.echo("hello from fixture plugin")
