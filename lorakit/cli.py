"""The root ``lorakit`` command: a lazy map of core commands, plugin commands, and the error boundary.

Core commands are imported only when they run (or when their help is shown), so ``lorakit --help``
never imports torch.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from lorakit import __version__
from lorakit.errors import LorakitError

CORE_COMMANDS = {
    "download": ("lorakit.commands.download", "download", "Download adapters and models from the Hugging Face hub."),
    "convert": ("lorakit.commands.convert", "convert", "Convert a legacy adapter (adapter_model.bin, 2023 config) to safetensors."),
    "upload": ("lorakit.commands.upload", "upload", "Upload an adapter with a generated model card to the Hugging Face hub."),
    "apply": ("lorakit.commands.apply", "apply", "Load a base model and attach LoRAs (interactive session with -i)."),
    "train": ("lorakit.commands.train", "train", "Train a LoRA on a formatted, chat or raw-text dataset."),
    "eval": ("lorakit.commands.eval", "eval_command", "Perplexity of the base and LoRAs on identical tokens."),
    "merge": ("lorakit.commands.merge", "merge", "Merge LoRAs into the base or combine adapters; export."),
    "chat": ("lorakit.commands.chat", "chat", "Chat with a model and LoRAs, in process or with a server (--url)."),
    "generate": ("lorakit.commands.generate", "generate", "Generate text with zero or more LoRAs attached."),
    "serve": ("lorakit.commands.serve", "serve", "Serve the base and LoRAs (mixed per request) over the OpenAI API."),
    "loaders": ("lorakit.commands.loaders", "loaders", "List loader backends and their LoRA capabilities."),
    "plugins": ("lorakit.commands.plugins", "plugins", "List installed plugins and the hooks they implement."),
}

class LorakitGroup(click.Group):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from lorakit.plugin.host import add_plugin_commands

        add_plugin_commands(self)

    def list_commands(self, ctx):
        self._load_plugin_commands()
        return sorted(set(CORE_COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name in CORE_COMMANDS:
            module_name, attribute, _ = CORE_COMMANDS[name]
            return getattr(importlib.import_module(module_name), attribute)
        self._load_plugin_commands()
        return self.commands.get(name)

    def format_commands(self, ctx, formatter):
        # Short help comes from the table above, so listing commands imports none of them.
        self._load_plugin_commands()
        rows = [(name, CORE_COMMANDS[name][2]) for name in sorted(CORE_COMMANDS)]
        for name in sorted(self.commands):
            if name not in CORE_COMMANDS:
                rows.append((name, self.commands[name].get_short_help_str(limit=70)))
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LorakitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lorakit")
def cli():
    """lorakit: the whole LoRA life cycle for causal language models.

    \b
    Folders: $LORAKIT_HOME (default ~/.lorakit) holds models/ and loras/.
    Environment: LORAKIT_HOME, LORAKIT_DEBUG=1 (tracebacks), LORAKIT_LOAD_PLUGINS,
    LORAKIT_DISABLE_PLUGINS, LORAKIT_TRACE_PLUGINS=1.
    """


def _debug() -> bool:
    return bool(os.environ.get("LORAKIT_DEBUG"))


def explain_exception(error: BaseException) -> str:
    """Turn a library error into one actionable line."""
    from lorakit.output.explain import translate

    return translate(error)


def main(argv: list[str] | None = None) -> None:
    from lorakit.output.quiet import quiet_logs

    quiet_logs()
    try:
        cli.main(args=argv, prog_name="lorakit", standalone_mode=False)
    except LorakitError as error:
        if _debug():
            raise
        click.echo(f"Error: {error.one_line()}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as error:
        if _debug():
            raise
        command = error.ctx.command_path if getattr(error, "ctx", None) else "lorakit"
        suffix = f" (see '{command} --help')" if isinstance(error, click.UsageError) else ""
        click.echo(f"Error: {error.format_message()}{suffix}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as error:  # the boundary: one line, never a traceback unless asked
        if _debug():
            raise
        click.echo(f"Error: {explain_exception(error)}", err=True)
        sys.exit(1)
