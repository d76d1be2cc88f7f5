"""``lorakit chat``: a multi-turn conversation with MODEL and LoRAs, in process or with a server."""

from __future__ import annotations

import os

import click

from lorakit.commands.options import (
    build_load_options,
    build_sampling,
    load_options,
    lora_option,
    model_argument,
    sampling_options,
)
from lorakit.inference.prompts import TEMPLATES

_LOCAL_ONLY = ("loader_name", "dtype", "load_in_8bit", "load_in_4bit", "cpu", "trust_remote_code", "allow_pickle", "template")


@click.command()
@model_argument
@lora_option
@click.option("--url", help="Talk to an OpenAI-compatible server (e.g. lorakit serve) instead of loading MODEL here.")
@click.option("--api-key", help="The server's API key (default: $LORAKIT_API_KEY); never printed.")
@click.option("--system", help="The system message to start with (/system changes it).")
@click.option("--template", type=click.Choice(TEMPLATES), default="auto", show_default=True,
              help="auto: what the LoRA was trained with, else the model's chat template, else raw; "
                   "or one of generate's templates (alpaca, a shipped format file, ...).")
@click.option("--no-history", is_flag=True, help="Do not read or write the line history ($LORAKIT_HOME/chat_history).")
@sampling_options
@load_options
@click.pass_context
def chat(ctx, model, loras, url, api_key, system, template, no_history, **kwargs):
    """Chat with MODEL (default: the embedded SmolLM2-135M-Instruct) and LoRAs, turn after turn.

    Replies stream as they come; type /help for the slash commands (/lora add NAME[:W],
    /lora remove NAME, /weight NAME W, /system TEXT, /reset, /save FILE). With --url, MODEL and the
    LoRA names are the server's, and LoRA changes become the request's model field (a:0.7+b:0.3).

    \b
    Examples:
      lorakit chat --lora my-lora --greedy
      lorakit chat --url http://127.0.0.1:8000 --lora my-lora:0.7
    """
    from click.core import ParameterSource

    from lorakit.chat.repl import run_chat
    from lorakit.errors import UsageError

    explicit = frozenset(name for name in kwargs if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT)
    settings = build_sampling(kwargs)
    if url is not None:
        given = [name for name in _LOCAL_ONLY if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT]
        if given:
            flag = "--loader" if given[0] == "loader_name" else "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} applies to a model loaded here; with --url the server loads the model", f"drop {flag} or --url")
        from lorakit.chat.remote import RemoteChatEngine

        engine = RemoteChatEngine(url, model, api_key or os.environ.get("LORAKIT_API_KEY") or None, explicit, loras)
    else:
        if api_key is not None:
            raise UsageError("--api-key is for a server", "add --url, or drop --api-key")
        from lorakit.inference.chat_engine import open_local_engine

        options = build_load_options(kwargs)
        engine = open_local_engine(model, loras, kwargs.pop("loader_name"), options, template)
    run_chat(engine, settings, system, keep_history=not no_history)
