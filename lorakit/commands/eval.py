"""``lorakit eval``: strided perplexity of the base and LoRAs, compared on identical token windows."""

from __future__ import annotations

import json

import click

from lorakit.commands.options import (
    build_load_options,
    load_options,
    lora_option,
    model_argument,
)


@click.command(name="eval")
@model_argument
@lora_option
@click.option("--dataset", metavar="PATH", help="A .txt file, a folder of .txt files, or JSON/JSONL rows.")
@click.option("--text-field", metavar="NAME", help="Field holding the text in JSON/JSONL rows  [default: text]")
@click.option("--format", "fmt", metavar="NAME|FILE", help="Score instruction/chat rows like training does: the response tokens only.")
@click.option("--train-only-after", "score_after", metavar="TEXT",
              help="With rows: score only what follows TEXT, as `train --train-only-after` trains it  [default: the format's response; \"\" scores whole rows]")
@click.option("--add-eos", is_flag=True, help="With --format: end each row with the EOS token and score it (as `train --add-eos`).")
@click.option("--compare", metavar="LIST", help="Configurations to compare, e.g. base,my-lora,my-lora:0.5,a+b:0.3.")
@click.option("--max-length", type=int, help="Window length in tokens  [default: 1024, or the model's context if smaller]")
@click.option("--stride", type=int, help="Step between windows in tokens  [default: half of --max-length]")
@click.option("--batch-size", type=int, help="Windows per forward pass  [default: chosen from the device's memory]")
@click.option("--comment", default="", help="A note stored with the results in the evaluations log.")
@click.option("--no-cache", is_flag=True, help="Recompute even when an identical evaluation is cached.")
@click.option("--history", is_flag=True, help="Print the evaluations log and exit.")
@click.option("--json", "as_json", is_flag=True, help="Write the results (or --history) as JSON on stdout.")
@load_options
def eval_command(model, loras, dataset, text_field, fmt, score_after, add_eos, compare, max_length, stride, batch_size, comment, no_cache, history, as_json, loader_name, **kwargs):
    """Perplexity of MODEL (default: the embedded SmolLM2) with LoRAs, on a text dataset.

    The method is the strided one of the transformers documentation: windows of --max-length
    tokens every --stride tokens; each token is scored once, with the context of its window; the
    perplexity is exp of the mean negative log-likelihood over the scored tokens. Files and rows
    are scored separately. Instruction/chat rows (--format, or rows a format recognises) count
    their response tokens only, masked by the training code.

    --compare scores several configurations on the very same windows and prints one table
    (perplexity, mean NLL, tokens, delta vs base); a name is a --lora entry or an adapter folder.
    A dataset shorter than one window is refused: pass a smaller --max-length.

    Results are appended to $LORAKIT_HOME/evaluations.csv and cached: an identical request (same
    model, LoRA contents and weights, dataset content, length, stride, precision) is answered
    from the cache without loading the model.

    \b
    Examples:
      lorakit eval --dataset wiki.test.raw.txt --max-length 512 --stride 256
      lorakit eval --lora my-lora --dataset notes.txt --compare base,my-lora,my-lora:0.5
      lorakit eval --dataset rows.jsonl --text-field body --json
      lorakit eval --lora my-lora --dataset facts.json --format alpaca --compare base,my-lora
      lorakit eval --history
    """
    from lorakit.errors import UsageError
    from lorakit.evaluation import records, report
    from lorakit.output.console import err_console, out_console

    options = build_load_options(kwargs)
    if history:
        if dataset:
            raise UsageError("--history prints the evaluations log; run without it to evaluate --dataset")
        rows = records.log_read()
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        elif rows:
            report.print_history(rows, out_console(), records.log_path())
        else:
            err_console().print(f"No evaluations logged yet (the log will be {records.log_path()}).", markup=False)
        return
    if not dataset:
        raise UsageError("--dataset is required", "pass a .txt file, a folder of .txt files or a JSON/JSONL file (or use --history)")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {batch_size})")

    from lorakit.evaluation.runner import EvalRequest, run_eval

    request = EvalRequest(
        dataset=dataset, model=model, loras=loras, compare=compare, text_field=text_field, fmt=fmt, add_eos=add_eos, score_after=score_after,
        max_length=max_length, stride=stride, batch_size=batch_size, loader_name=loader_name, options=options,
        comment=comment, use_cache=not no_cache,
    )
    rows = run_eval(request)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        report.print_table(rows, out_console())  # results are data: stdout (progress stays on stderr)
