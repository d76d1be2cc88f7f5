"""``lorakit generate``: text with zero or more LoRAs attached, streamed as it comes."""

from __future__ import annotations

import sys

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


@click.command()
@model_argument
@lora_option
@click.option("--prompt", help="The prompt (or instruction for --template alpaca); '-' reads it from stdin.")
@click.option("--input", "input_text", help="Input/context for the alpaca template's 'with input' form.")
@click.option("--system", help="System message (chat, chatml, llama2-chat, or a format with a system template).")
@click.option("--input-file", type=click.Path(dir_okay=False, allow_dash=True), help="JSONL of prompts: {\"prompt\": ..., \"input\": ...} per line; writes JSONL.")
@click.option("--template", type=click.Choice(TEMPLATES), default="auto", show_default=True,
              help="auto: the format the LoRA was trained with (any shipped or recorded format file), else the model's chat template, else raw.")
@sampling_options
@click.option("--compare", is_flag=True, help="Generate the same prompt without and with the LoRA(s), side by side.")
@click.option("--json", "as_json", is_flag=True, help="Write JSON on stdout (one object per prompt).")
@load_options
def generate(model, loras, prompt, input_text, system, input_file, template, compare, as_json, loader_name, **kwargs):
    """Generate text from MODEL (default: the embedded SmolLM2-135M-Instruct) with LoRAs attached.

    \b
    Examples:
      lorakit generate --prompt "What is the capital of France?" --greedy
      lorakit generate --lora my-lora --template alpaca --prompt "Name three colors." --compare
      lorakit generate --input-file prompts.jsonl --lora my-lora:0.7 > outputs.jsonl
    """
    from lorakit.errors import UsageError
    from lorakit.inference.runner import GenerateJob, read_prompts, run_job

    settings = build_sampling(kwargs)
    options = build_load_options(kwargs)
    if (prompt is None) == (input_file is None):
        raise UsageError("give exactly one of --prompt or --input-file")
    if compare and not loras:
        raise UsageError("--compare needs at least one --lora to compare against the base")
    if prompt == "-":
        prompt = sys.stdin.read()
    items = read_prompts(input_file, settings) if input_file else [{"prompt": prompt, "input": input_text, "system": system}]
    job = GenerateJob(
        model=model, loras=loras, loader_name=loader_name, options=options, settings=settings, template=template,
        compare=compare, as_json=as_json or bool(input_file), stream=not (as_json or input_file),
    )
    run_job(job, items)
