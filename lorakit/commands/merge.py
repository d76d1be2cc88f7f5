"""``lorakit merge``: merge LoRAs into the base (HF folder, Meta state_dict), export a GGUF LoRA, or combine adapters."""

from __future__ import annotations

import json

import click

from lorakit.errors import UsageError

FORMATS = ("hf", "state_dict", "gguf-lora")
METHOD_CHOICES = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")


def apply_weights(texts: list[str], weights: str | None):
    """``--lora NAME[:WEIGHT]`` specs, with ``--weights w1,w2,...`` (one per LoRA) applied in order."""
    from lorakit.store.lora_spec import LoraSpec, parse_loras, parse_weight

    specs = parse_loras(texts)
    if weights is None:
        return specs
    try:
        values = [float(item) for item in weights.split(",") if item.strip()]
    except ValueError as error:
        raise UsageError(f"--weights '{weights}' is not a comma-separated list of numbers", "e.g. --weights 0.7,0.3") from error
    values = [parse_weight(item.strip(), f"--weights '{weights}'") for item in weights.split(",") if item.strip()]
    if len(values) != len(specs):
        raise UsageError(f"--weights has {len(values)} value(s) for {len(specs)} LoRA(s)", "give one weight per LoRA, in the same order")
    inline = [spec.text for spec in specs if spec.weight != 1.0 or spec.text != spec.name]
    if inline:
        raise UsageError(f"'{inline[0]}' already has a :WEIGHT; use either NAME:WEIGHT or --weights, not both")
    return [LoraSpec(spec.text, spec.name, value) for spec, value in zip(specs, values)]


@click.command()
@click.argument("inputs", nargs=-1, metavar="[MODEL | ADAPTER...]")
@click.option("--lora", "loras", multiple=True, metavar="PATH[:WEIGHT]", help="LoRA folder, name under $LORAKIT_HOME/loras, or hub id ORG/NAME[:REVISION], with an optional :WEIGHT; repeatable.")
@click.option("--weights", metavar="W1,W2,...", help="One weight per LoRA, in order (instead of NAME:WEIGHT).")
@click.option("--output", "-o", required=True, help="Output folder (hf, state_dict, --adapters-only: a bare NAME goes under $LORAKIT_HOME/loras) or .gguf file.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="hf", show_default=True,
              help="hf: merged HF folder; state_dict: Meta LLaMA consolidated.00.pth + params.json; gguf-lora: llama.cpp LoRA adapter (not merged).")
@click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True, help="Output precision (auto: the base's).")
@click.option("--max-shard-size", default="5GB", show_default=True, help="Largest output shard (hf), e.g. 2GB, 500MB.")
@click.option("--dequantize", is_flag=True, help="Merge into a 16-bit dequantized copy of an 8-bit/4-bit/GPTQ base.")
@click.option("--adapters-only", is_flag=True, help="Combine the given adapters into a new adapter instead of merging into a model.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="cat", show_default=True,
              help="--adapters-only combination: cat is exact (rank = sum); svd truncates (--svd-rank); linear/ties/dare_* need equal ranks.")
@click.option("--density", type=float, default=None, help="Share of values kept by ties/dare/magnitude_prune methods (default 0.5).")
@click.option("--majority-sign", type=click.Choice(["total", "frequency"]), default="total", show_default=True, help="TIES sign election.")
@click.option("--svd-rank", type=int, default=None, help="Rank of an svd combination (default: the largest input rank).")
@click.option("--svd-clamp", type=float, default=None, help="Quantile at which svd factors are clamped (off by default).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for DARE pruning.")
@click.option("--no-verify", is_flag=True, help="Skip comparing the merged model's logits with base + LoRAs attached at runtime.")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--cpu", is_flag=True, help="Merge and verify on the CPU even when a GPU is present.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle weight files (loaded with weights_only=True).")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model folder to run.")
@click.option("--json", "as_json", is_flag=True, help="Write a JSON report on stdout.")
def merge(as_json, **options):
    """Merge LoRAs into MODEL (default: the embedded SmolLM2), export them, or combine adapters.

    Each LoRA's WEIGHT multiplies its update: W + sum_i w_i * (alpha_i / r_i) * B_i A_i.
    The merge streams tensor by tensor (memory: about one tensor plus the adapters), writes under a
    temporary name, checks the logits against base + LoRAs attached at runtime, then renames the output into place.

    \b
    Examples:
      lorakit merge --lora my-lora --output merged-model
      lorakit merge models/llama --lora a:0.7 --lora b:0.3 --output out --dtype bf16 --max-shard-size 2GB
      lorakit merge models/llama --lora my-lora --format state_dict --output llama-meta
      lorakit merge --lora my-lora --format gguf-lora --output my-lora.gguf
      lorakit merge --adapters-only lora-a lora-b --weights 0.5,0.5 --method cat --output combined
    """
    import contextlib
    import sys

    # Only the report belongs on stdout; some libraries print banners when imported (GPTQModel via PEFT).
    with contextlib.redirect_stdout(sys.stderr):
        report = _combine(**options) if options["adapters_only"] else _merge(**options)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        from lorakit.output.console import info

        info(f"Done in {report['seconds']:.1f} s: {report['output']}")


def _combine(inputs, loras, weights, output, fmt, dtype, dequantize, method, density, majority_sign, svd_rank, svd_clamp, seed,
             force, allow_pickle, **_) -> dict:
    specs = apply_weights(list(inputs) + list(loras), weights)
    if not specs:
        raise UsageError("--adapters-only needs adapters to combine", "e.g. lorakit merge --adapters-only lora-a lora-b --output combined")
    if fmt != "hf" or dequantize or dtype != "auto":
        raise UsageError("--format, --dtype and --dequantize apply to merging into a model, not to --adapters-only")
    from lorakit.merging.combine import CombineOptions
    from lorakit.merging.run_combine import run_combine
    from lorakit.output.quiet import quiet_libraries

    quiet_libraries()
    options = CombineOptions(method, density, majority_sign, svd_rank, svd_clamp, seed)
    return run_combine(specs, output, options, force=force, allow_pickle=allow_pickle)


def _merge(inputs, loras, weights, output, fmt, dtype, max_shard_size, dequantize, no_verify, force, cpu, allow_pickle,
           trust_remote_code, **_) -> dict:
    if len(inputs) > 1:
        raise UsageError(f"merge takes one MODEL, got {len(inputs)} ({', '.join(inputs)})", "pass LoRAs with --lora, or use --adapters-only to combine adapters")
    specs = apply_weights(list(loras), weights)
    if not specs:
        raise UsageError("nothing to merge: give at least one --lora")
    source = click.get_current_context().get_parameter_source
    if any(source(name) == click.core.ParameterSource.COMMANDLINE for name in ("method", "density", "svd_rank", "svd_clamp")):
        raise UsageError("--method, --density and --svd-rank/--svd-clamp apply to --adapters-only")
    if fmt != "hf" and source("max_shard_size") == click.core.ParameterSource.COMMANDLINE:
        raise UsageError(f"--max-shard-size applies to --format hf, not {fmt}")
    from pathlib import Path

    from lorakit.merging.run_merge import MergeRequest, run_merge

    request = MergeRequest(
        model=inputs[0] if inputs else None, loras=specs, output=Path(output), fmt=fmt, dtype=dtype, max_shard_size=max_shard_size,
        dequantize=dequantize, force=force, verify=not no_verify, cpu=cpu, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
    )
    if fmt == "hf":
        from lorakit.merging.hf_writer import parse_size

        parse_size(max_shard_size)  # a bad size fails before any work
    return run_merge(request)
