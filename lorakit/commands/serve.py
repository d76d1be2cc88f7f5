"""``lorakit serve``: an OpenAI-compatible server for the base and any adapters, mixed per request."""

from __future__ import annotations

import click

from lorakit.commands.options import build_load_options, load_options, model_argument


@click.command()
@model_argument
@click.option("--lora", "loras", multiple=True, metavar="NAME[:WEIGHT]",
              help="Preload this adapter (folder or name under $LORAKIT_HOME/loras), optionally with its default weight; repeatable. "
                   "Every adapter under $LORAKIT_HOME/loras is servable by name anyway.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; anything but loopback needs --api-key.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--api-key", envvar="LORAKIT_API_KEY", default=None, show_default=False,
              help="Require 'Authorization: Bearer KEY' (also from LORAKIT_API_KEY); never printed.")
@click.option("--insecure-no-api-key", "insecure", is_flag=True,
              help="Allow a non-loopback --host without a key: anyone who reaches the port can use the server.")
@click.option("--engine", default="lorakit", show_default=True, help="Serving engine (lorakit's own, or one a plugin registers).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="Sequences decoded together in one forward pass.")
@click.option("--max-queue", type=int, default=64, show_default=True, help="Requests waiting beyond the batch; more get 429.")
@click.option("--max-loaded-loras", type=int, default=8, show_default=True, help="Adapters kept in memory (least recently used evicted).")
@click.option("--max-tokens-limit", type=int, default=4096, show_default=True, help="The largest max_tokens a request may ask for.")
@load_options
def serve(model, loras, host, port, api_key, insecure, engine, max_batch, max_queue, max_loaded_loras, max_tokens_limit,
          loader_name, **kwargs):
    """Serve MODEL (default: the embedded SmolLM2-135M-Instruct) over the OpenAI API, with LoRAs per request.

    \b
    `model` in a request: the base's id, an adapter's name, or a weighted mixture such as
    "a:0.7+b:0.3". Runtime adapters: POST /v1/load_lora_adapter and /v1/unload_lora_adapter.
    Prints `listening on http://HOST:PORT` on stderr when ready; SIGTERM or Ctrl-C stops it.

    \b
    Examples:
      lorakit serve --lora my-lora
      lorakit serve --host 0.0.0.0 --api-key "$KEY" --max-batch 16
    """
    import sys

    from lorakit.output.console import warn
    from lorakit.serving.setup import build_request, run_engine

    options = build_load_options(kwargs)
    request = build_request(
        model, loras, host=host, port=port, api_key=api_key, insecure=insecure, max_batch=max_batch, max_queue=max_queue,
        max_loaded_loras=max_loaded_loras, max_tokens_limit=max_tokens_limit, options=options, loader_name=loader_name,
        engine=engine,
    )
    if insecure and api_key is None:
        warn(f"--insecure-no-api-key: anyone who can reach {host}:{port} can use this server")
    sys.exit(run_engine(engine, request))
