"""Click options shared by the commands that load a model (generate, apply, eval, merge, train)."""

from __future__ import annotations

import click

from lorakit.loaders.devices import DTYPES


def model_argument(func):
    return click.argument("model", required=False, metavar="[MODEL]")(func)


def lora_option(func):
    return click.option(
        "--lora", "loras", multiple=True, metavar="PATH[:WEIGHT]",
        help="LoRA folder, name under $LORAKIT_HOME/loras, or hub id ORG/NAME[:REVISION], with an optional :WEIGHT; repeatable.",
    )(func)


def load_options(func):
    """--loader, --dtype, --load-in-8bit/--load-in-4bit, --cpu, --trust-remote-code, --allow-pickle."""
    decorators = [
        click.option("--loader", "loader_name", default=None, help="Loader backend (see `lorakit loaders`); default: chosen from the model."),
        click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True, help="Weights precision (auto: fp32 on CPU, bf16/fp16 on GPU)."),
        click.option("--load-in-8bit", is_flag=True, help="Load the base in 8-bit (bitsandbytes)."),
        click.option("--load-in-4bit", is_flag=True, help="Load the base in 4-bit NF4 (bitsandbytes)."),
        click.option("--cpu", is_flag=True, help="Run on the CPU even when a GPU is present."),
        click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model folder to run."),
        click.option("--allow-pickle", is_flag=True, help="Allow pickle weight files (loaded with weights_only=True)."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def build_load_options(kwargs: dict, purpose: str = "inference"):
    from lorakit.loaders.options import LoadOptions

    return LoadOptions(
        dtype=kwargs.pop("dtype", "auto"),
        load_in_8bit=kwargs.pop("load_in_8bit", False),
        load_in_4bit=kwargs.pop("load_in_4bit", False),
        cpu=kwargs.pop("cpu", False),
        trust_remote_code=kwargs.pop("trust_remote_code", False),
        allow_pickle=kwargs.pop("allow_pickle", False),
        purpose=purpose,
    )


def sampling_options(func):
    decorators = [
        click.option("--max-new-tokens", type=int, default=200, show_default=True),
        click.option("--greedy", is_flag=True, help="Deterministic: always take the most likely token."),
        click.option("--temperature", type=float, default=0.7, show_default=True),
        click.option("--top-p", type=float, default=0.9, show_default=True),
        click.option("--top-k", type=int, default=20, show_default=True, help="0 turns top-k off."),
        click.option("--repetition-penalty", type=float, default=1.15, show_default=True),
        click.option("--seed", type=int, default=None, help="Random seed for sampling (same seed, same text)."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def build_sampling(kwargs: dict):
    from lorakit.inference.generation import SamplingSettings

    settings = SamplingSettings(
        max_new_tokens=kwargs.pop("max_new_tokens"),
        temperature=kwargs.pop("temperature"),
        top_p=kwargs.pop("top_p"),
        top_k=kwargs.pop("top_k"),
        repetition_penalty=kwargs.pop("repetition_penalty"),
        seed=kwargs.pop("seed"),
        greedy=kwargs.pop("greedy"),
    )
    settings.validate()
    return settings
