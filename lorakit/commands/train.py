"""``lorakit train``: train a LoRA on a formatted, chat or raw-text dataset, with true resume."""

from __future__ import annotations

from pathlib import Path

import click

from lorakit.training.params import EXPERT_MODES, INIT_METHODS, OPTIMIZERS, SCHEDULERS, TrainParams

D = TrainParams()
SAMPLE_ALIAS = "sample"


def _opt(*names, **kwargs):
    kwargs.setdefault("show_default", "default" in kwargs)
    return click.option(*names, **kwargs)


OPTIONS = [
    _opt("--name", help="LoRA name: saved to $LORAKIT_HOME/loras/NAME (default: the dataset file's name)."),
    _opt("--output", type=click.Path(path_type=Path), help="Folder to save to instead of loras/NAME."),
    _opt("--dataset", help=f"JSON/JSONL rows (formatted or chat). '{SAMPLE_ALIAS}' = the shipped made-up-facts dataset."),
    _opt("--format", help="Format: alpaca, alpaca-chatbot, chatml, llama2-chat, vicuna, a format-file path, or a plugin's name (default: guessed from the rows)."),
    _opt("--raw-text", help="A .txt file or a folder of them, cut into --cutoff-len token windows."),
    _opt("--eval-dataset", help="Rows to compute an evaluation loss on every --eval-steps steps."),
    _opt("--val-set-size", type=float, default=D.val_set_size, metavar="N|FRACTION",
         help="Hold out N examples (or a fraction such as 0.05) of the data, seeded by --seed, as the evaluation set (0 = none)."),
    _opt("--rank", type=int, default=D.rank, help="LoRA rank r."),
    _opt("--alpha", type=float, default=D.alpha, help="LoRA alpha (scale = alpha / rank)."),
    _opt("--dropout", type=float, default=D.dropout, help="LoRA dropout."),
    _opt("--target-modules", default=",".join(D.target_modules), help="Comma-separated projections, or all-linear."),
    _opt("--experts", default=D.experts, type=click.Choice(EXPERT_MODES), show_default=True,
         help="Mixture-of-experts models: target = LoRAs on the routed experts too (PEFT target_parameters), skip = leave them out; "
              "auto refuses targets that would skip them silently."),
    _opt("--learning-rate", type=float, default=D.learning_rate),
    _opt("--weight-decay", type=float, default=D.weight_decay, help="Weight decay of the optimizer (decoupled for AdamW)."),
    _opt("--scheduler", default=D.scheduler, help="One of: " + ", ".join(SCHEDULERS) + "."),
    _opt("--epochs", type=float, default=D.epochs, help="Passes over the data (fractions allowed)."),
    _opt("--max-steps", type=int, default=D.max_steps, help="Train exactly this many optimizer steps, cycling through epochs (0 = set by --epochs)."),
    _opt("--micro-batch-size", type=int, default=D.micro_batch_size, help="Examples per forward pass (packed into one row, no padding)."),
    _opt("--batch-size", type=int, default=D.batch_size, help="Examples per optimizer step; accumulation = batch / micro batch."),
    _opt("--warmup-steps", type=int, default=D.warmup_steps, help="Warm-up length in micro-batches, as in text-generation-webui."),
    _opt("--optimizer", default=D.optimizer, help="One of: " + ", ".join(OPTIMIZERS) + "."),
    _opt("--cutoff-len", type=int, default=D.cutoff_len, help="Maximum tokens per example / raw-text window."),
    _opt("--overlap-len", type=int, default=D.overlap_len, help="Raw text: tokens shared by consecutive windows."),
    _opt("--newline-favor-len", type=int, default=D.newline_favor_len, help="Raw text: move window edges to a newline within this many characters."),
    _opt("--hard-cut-string", default=D.hard_cut_string, help="Raw text: blocks are split here; no window crosses it."),
    _opt("--min-chars", type=int, default=D.min_chars, help="Raw text: drop blocks whose stripped text is at most this many characters (text-generation-webui's rule)."),
    _opt("--add-eos/--no-add-eos", default=D.add_eos, help="Train an end-of-sequence token at the end of each example / hard cut."),
    _opt("--train-only-after", default=D.train_only_after, help="Mask everything up to and including this text (e.g. '### Response:')."),
    _opt("--stop-at-loss", type=float, default=D.stop_at_loss, help="Stop once the step loss falls below this (0 = never)."),
    _opt("--eval-steps", type=int, default=D.eval_steps, help="Evaluate every N optimizer steps (with --eval-dataset)."),
    _opt("--save-steps", type=int, default=D.save_steps, help="Write checkpoint-N every N optimizer steps (0 = only on Ctrl-C)."),
    _opt("--load-best/--no-load-best", default=D.load_best,
         help="Checkpoint every new lowest evaluation loss and save that checkpoint's weights as the adapter."),
    _opt("--early-stopping-patience", type=int, default=D.early_stopping_patience, metavar="N",
         help="Stop after N evaluations without a lower evaluation loss (0 = never)."),
    _opt("--gradient-checkpointing/--no-gradient-checkpointing", default=D.gradient_checkpointing,
         help="Recompute each layer's activations in the backward (non-reentrant): far less memory, about a third more compute. "
              "Off by default; a GPU run wants it when the activations do not fit (the run says so)."),
    _opt("--seed", type=int, default=D.seed),
    _opt("--precision", default=D.precision, help="auto (bf16 autocast where the CPU/GPU runs bf16 natively, else fp32), fp32, bf16 or fp16."),
    _opt("--load-in-8bit", is_flag=True, help="Load the base in 8-bit (bitsandbytes)."),
    _opt("--load-in-4bit", is_flag=True, help="Load the base in 4-bit NF4 (QLoRA)."),
    _opt("--loader", default=D.loader, help="Loader backend that can train (see `lorakit loaders`); auto = chosen from the model."),
    _opt("--use-rslora", is_flag=True, help="Rank-stabilised LoRA (scale alpha / sqrt(rank))."),
    _opt("--use-dora", is_flag=True, help="Weight-decomposed LoRA (DoRA)."),
    _opt("--init-lora-weights", default=D.init_lora_weights, help="One of: " + ", ".join(INIT_METHODS) + "."),
    _opt("--report-to", default=D.report_to,
         help="none, or tensorboard, wandb, mlflow (comma-separated; optional extras). TensorBoard logs to OUTPUT/runs, W&B to OUTPUT/wandb "
              "(WANDB_MODE=offline works), MLflow to $MLFLOW_TRACKING_URI or OUTPUT/mlruns."),
    _opt("--shard", default=D.shard, help="Under torchrun: fsdp2 shards the frozen base over the ranks with PyTorch FSDP2 "
         "(LoRA weights and optimizer state stay replicated); none = every rank holds the whole base."),
    _opt("--copy-from", metavar="LORA", help="Start from the saved parameters of an existing LoRA (flags still override)."),
    _opt("--config", "config_file", metavar="FILE", help=f"YAML/JSON file of parameters (keys as the flag names). '{SAMPLE_ALIAS}' = the settings for the sample dataset."),
    _opt("--resume", is_flag=True, help="Continue from the newest complete checkpoint in the output folder."),
    _opt("--overwrite", is_flag=True, help="Replace an existing LoRA of the same name."),
    _opt("--dry-run", is_flag=True, help="Show formatted samples with trained tokens marked and token counts; train nothing."),
    _opt("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (with --dry-run: every example as a JSON line)."),
    _opt("--cpu", is_flag=True, help="Train on the CPU even when a GPU is present."),
]
RUN_CONTROLS = {"output", "copy_from", "config_file", "resume", "overwrite", "dry_run", "as_json", "cpu"}


def _options(func):
    for option in reversed(OPTIONS):
        func = option(func)
    return func


@click.command()
@click.argument("model", required=False, metavar="[MODEL]")
@_options
@click.pass_context
def train(ctx: click.Context, model, **flags):
    """Train a LoRA on MODEL (default: the embedded SmolLM2-135M-Instruct).

    The adapter, its parameters, the training log, a loss-curve PNG and checkpoint-N/ folders land
    in $LORAKIT_HOME/loras/NAME. Runs under `torchrun --nproc_per_node=N` unchanged.

    \b
    Examples:
      lorakit train --config sample          # the sample dataset with settings for 32 rows
      lorakit train --name facts --dataset sample --target-modules all-linear --rank 16 --alpha 32 --learning-rate 3e-3 --scheduler constant --warmup-steps 0 --batch-size 8 --micro-batch-size 8 --epochs 4 --add-eos
      lorakit train --name facts --dataset sample --dry-run
      lorakit train --name novel --raw-text books/ --cutoff-len 512 --overlap-len 128 --save-steps 50
      lorakit train --name novel --resume
      torchrun --nproc_per_node=2 -m lorakit train --name facts --dataset data.json
    """
    from lorakit.errors import UsageError
    from lorakit.training import job
    from lorakit.training import params as P

    typed = _typed_values(ctx, flags)
    if model is not None:
        typed["model"] = model
    copied = P.params_from_lora(flags["copy_from"]) if flags["copy_from"] else {}
    config_file = flags["config_file"]
    if config_file == SAMPLE_ALIAS and not Path(SAMPLE_ALIAS).exists():
        from lorakit.training.dataset import sample_config_path

        config_file = sample_config_path()
    config = P.read_config_file(config_file) if config_file else {}
    merged = {**copied, **config, **typed}

    output, name = _output_and_name(merged, flags["output"])
    mode = "fresh"
    if flags["resume"] and not flags["dry_run"]:
        mode = job.check_output(output, resume=True, overwrite=flags["overwrite"])
        saved = job.saved_params(output)
        merged = {**saved, **config, **typed}
        previous = P.TrainParams(**{**saved, "name": name})
    merged["name"] = name
    if merged.get("dataset") == SAMPLE_ALIAS and not Path(SAMPLE_ALIAS).exists():
        from lorakit.training.dataset import sample_dataset_path

        merged["dataset"] = str(sample_dataset_path())
    params = P.TrainParams(**merged)
    P.validate(params)
    if mode == "fresh" and not flags["dry_run"]:
        mode = job.check_output(output, resume=False, overwrite=flags["overwrite"])
    if mode == "resume" and params.structural() != previous.structural():
        changed = next(key for key in params.structural() if params.structural()[key] != previous.structural()[key])
        raise UsageError(
            f"cannot resume '{name}' with a different {changed.replace('_', ' ')} "
            f"({previous.structural()[changed]} in its checkpoints, {params.structural()[changed]} now)",
            "resume with the same rank, target modules and --experts, or start again with --overwrite",
        )
    from lorakit.training.trackers import check_available

    check_available(params.trackers())

    request = job.RunRequest(params, output, mode, cpu=flags["cpu"], dry_run=flags["dry_run"], json_out=flags["as_json"])
    summary = job.run(request)
    if summary is None:
        return
    if not _is_rank_zero():
        return
    if flags["as_json"]:
        click.echo(job.dump_json(summary))
    else:
        from lorakit.output.console import info

        info(job.summary_line(summary))


def _typed_values(ctx: click.Context, flags: dict) -> dict:
    """Only values typed on the command line (or set through the environment) override files."""
    from click.core import ParameterSource

    from lorakit.training.params import parse_target_modules

    typed = {}
    for key, value in flags.items():
        if key in RUN_CONTROLS:
            continue
        source = ctx.get_parameter_source(key)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            typed[key] = parse_target_modules(value) if key == "target_modules" else value
    return typed


def _output_and_name(values: dict, output: Path | None) -> tuple[Path, str]:
    from lorakit.errors import UsageError
    from lorakit.store import home

    name = values.get("name")
    if output is not None:
        output = Path(output).expanduser()
        return output, name or output.name
    if not name:
        source = values.get("dataset") or values.get("raw_text")
        if not source:
            raise UsageError("nothing to train on", f"pass --dataset FILE (or --dataset {SAMPLE_ALIAS}) or --raw-text FILE_OR_FOLDER")
        name = Path(str(source)).stem or "lora"
    if "/" in name or name.startswith(".") or not name.strip():
        raise UsageError(f"--name '{name}' is not a valid LoRA name", "use a plain folder name without '/'")
    return home.loras_dir() / name, name


def _is_rank_zero() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
