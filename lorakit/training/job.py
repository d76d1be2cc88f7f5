"""One ``lorakit train`` run, in the order that keeps bad input from costing time or data.

Cheap checks first (parameters, the output folder), then the tokenizer and the dataset (data
errors appear in a second, before the model loads), then the model; the output folder is created
or replaced only after all of that succeeded. Only rank 0 writes files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lorakit import __version__
from lorakit.output.console import info, warn
from lorakit.training import checkpoint as ckpt
from lorakit.training.params import TrainParams


@dataclass
class RunRequest:
    params: TrainParams
    output: Path
    mode: str  # "fresh", "resume" or "overwrite"
    cpu: bool = False
    dry_run: bool = False
    json_out: bool = False


def data_spec(params: TrainParams, eval_file: str | None = None):
    from lorakit.training.dataset import DataSpec

    return DataSpec(
        dataset=eval_file or params.dataset, format=params.format, raw_text=None if eval_file else params.raw_text,
        cutoff_len=params.cutoff_len, overlap_len=params.overlap_len, newline_favor_len=params.newline_favor_len,
        hard_cut_string=params.hard_cut_string, min_chars=params.min_chars, add_eos=params.add_eos,
        train_only_after=params.train_only_after or None,
    )


def load_tokenizer(model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


def run(request: RunRequest) -> dict | None:
    from lorakit.output.quiet import quiet_libraries

    quiet_libraries()
    from lorakit.loaders.devices import pick_device
    from lorakit.hub.resolve import resolve_model
    from lorakit.store.preflight import read_model_config
    from lorakit.training.dataset import load_examples
    from lorakit.training.distributed import device_for, init_distributed, shutdown

    from lorakit.loaders.registry import check_loader_name
    from lorakit.training.dataset import check_data

    params = request.params
    # Everything that can be refused without loading comes first: loader name, data files and
    # format, then the model folder, the target modules and the loader's training capabilities.
    check_loader_name(None if params.loader in ("", "auto") else params.loader)
    check_data(data_spec(params))
    if params.eval_dataset:
        check_data(data_spec(params, params.eval_dataset))
    model_path = resolve_model(params.model)
    if not request.dry_run:
        from lorakit.training.model_setup import check_target_modules, train_loader
        from lorakit.training.sharding import check_shard

        check_target_modules(params, model_path)
        check_shard(params.shard, params.load_in_4bit, params.load_in_8bit, pick_device(request.cpu))
        train_loader(params, model_path, request.cpu, pick_device(request.cpu))
    tokenizer = load_tokenizer(model_path)
    spec = data_spec(params)
    examples, stats = load_examples(tokenizer, spec)
    if request.dry_run:
        from lorakit.training.dry_run import print_dry_run, write_dry_run_json

        if request.json_out:
            write_dry_run_json(examples)
        else:
            print_dry_run(examples, stats, tokenizer)
        return None
    eval_examples = []
    if params.eval_dataset:
        eval_examples, _ = load_examples(tokenizer, data_spec(params, params.eval_dataset))
    elif params.val_set_size:
        from lorakit.training.held_out import split

        examples, eval_examples = split(examples, params.val_set_size, params.seed)

    device = pick_device(request.cpu)
    ctx = init_distributed(device)
    try:
        return _train(request, ctx, model_path, examples, stats, eval_examples, read_model_config(model_path), device_for(ctx, device))
    finally:
        shutdown(ctx)


def _train(request: RunRequest, ctx, model_path, examples, stats, eval_examples, model_config, device) -> dict:
    from lorakit.hub.model_card import finish_trained_adapter
    from lorakit.store.atomic import atomic_write_text
    from lorakit.training.distributed import barrier
    from lorakit.training.activation_memory import run_advice
    from lorakit.training.model_setup import attach_lora, load_base, refuse_nonfinite_shards
    from lorakit.training.outputs import (
        plot_loss,
        save_final_adapter,
        write_log,
        write_metadata,
    )
    from lorakit.training.params import PARAMS_FILE
    from lorakit.training.sharding import gather_peaks, import_peft_probes_early, shard_base
    from lorakit.training.trackers import MetricsSink
    from lorakit.training.trainer import Trainer, TrainingInterrupted

    params, output = request.params, request.output
    resume_from = ckpt.newest_checkpoint(output) if request.mode == "resume" else None
    if ctx.is_main:
        for message in stats.warnings:
            warn(message)
        held = f", {len(eval_examples)} held out for evaluation (--val-set-size)" if params.val_set_size else ""
        tokens = sum(len(example.input_ids) for example in examples)
        info(f"Training on {len(examples)} examples ({tokens} tokens) from {params.dataset or params.raw_text}{held}.")
        info(f"Loading {model_path}...")
    shard = params.shard != "none" and ctx.enabled
    if shard:
        import_peft_probes_early()
    session, precision = load_base(params, model_path, request.cpu, device, check_weights=not shard)
    peft_model = attach_lora(session.model, params)
    if params.gradient_checkpointing:
        from lorakit.training.activation_memory import enable

        enable(peft_model)
    sharded = shard_base(peft_model, ctx, params.shard, device)
    if sharded:  # each rank checks its own shards: no rank ever reads the whole base
        refuse_nonfinite_shards(peft_model, ctx)
    if ctx.is_main and params.shard != "none":
        info(f"Base sharded with FSDP2 over {ctx.world_size} ranks (LoRA weights and optimizer state replicated)." if sharded
             else f"--shard {params.shard}: a single process has nothing to shard (launch with torchrun --nproc_per_node=N).")
    params_json = params.to_json(version=__version__, model_path=str(model_path))

    aside, created = _prepare_output(output, request.mode) if ctx.is_main else (None, None)
    try:
        barrier(ctx)
        trainer = Trainer(params, peft_model, examples, eval_examples, device, precision, ctx, output, params_json)
        start_step, log = 0, []
        if resume_from is not None:
            start_step, log = trainer.resume(resume_from)
            if ctx.is_main:
                info(f"Resuming from {resume_from.name} (step {start_step} of {trainer.plan.total_steps}).")
                if start_step >= trainer.plan.total_steps:
                    info("That run had finished: nothing left to train (raise --epochs to train further).")
        if ctx.is_main:
            atomic_write_text(output / PARAMS_FILE, params_json)
            if trainer.warmup_steps >= trainer.plan.total_steps and params.scheduler != "constant":
                warn(
                    f"the warm-up ({params.warmup_steps} micro-batches = {trainer.warmup_steps} optimizer steps) is as long as the "
                    f"whole run ({trainer.plan.total_steps} steps), so the learning rate never reaches {params.learning_rate:g}; "
                    "lower --warmup-steps for a small dataset"
                )
            info(step_summary(trainer.plan, params, ctx.world_size, precision.name, device))
            message, urgent = run_advice(trainer.lengths, params.micro_batch_size, model_config, precision.autocast_dtype,
                                         params.gradient_checkpointing, device)
            if message:
                (warn if urgent else info)(message)
        trainer.metrics = MetricsSink(params.trackers(), output, ctx.is_main, name=params.name,
                                      config=params.to_dict(), start_step=start_step)
        try:
            result = trainer.run(start_step, log)
        finally:
            trainer.metrics.close()
    except BaseException:
        if aside is not None:
            _restore_aside(output, aside)
        elif created is not None and ckpt.newest_checkpoint(output) is None:
            shutil.rmtree(created, ignore_errors=True)  # a fresh run that failed leaves no folder behind
        raise

    summary = {
        "name": params.name, "output": str(output), "model": str(model_path), "stopped": result.stopped,
        "completed_steps": result.completed_steps, "total_steps": result.total_steps, "resumed_from_step": start_step,
        "examples": len(examples), "first_loss": result.log[0]["loss"] if result.log else None,
        "final_loss": result.log[-1]["loss"] if result.log else None, "eval_loss": result.eval_loss,
        "tokens_per_s": round(result.tokens_per_s, 2), "train_seconds": round(result.train_seconds, 2),
        "precision": precision.name, "device": str(device), "world_size": ctx.world_size,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "rank_fingerprints": result.rank_fingerprints, "attention": result.attention,
        "gradient_checkpointing": params.gradient_checkpointing, "held_out_examples": len(eval_examples) if params.val_set_size else 0,
        "best_step": result.best_step, "best_eval_loss": result.best_eval_loss,
        "loaded_best": str(result.loaded_best) if result.loaded_best else None,
        "shard": params.shard if sharded else "none", "rank_peak_memory": gather_peaks(ctx, device),
    }
    if ctx.is_main:
        info(f"Attention: {result.attention}.")
        if params.load_best and result.stopped != "interrupted":
            if result.loaded_best is not None:
                info(f"Kept the best evaluation: {result.loaded_best.name} (eval loss {result.best_eval_loss:.4f}) is the saved adapter.")
            elif result.best_step is not None:
                warn(f"checkpoint-{result.best_step} (the best evaluation) is gone: the adapter holds the last step's weights")
        tensors = save_final_adapter(output, peft_model)
        write_metadata(output, stats, model_config)
        write_log(output, result.log, summary)
        plot_loss(output, result.log, f"{params.name}: training loss")
        finish_trained_adapter(output, model_path)  # hub id + revision of the base, README.md model card
        summary["adapter_tensors"] = tensors
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    barrier(ctx)
    if result.stopped == "interrupted":
        where = f"saved {result.checkpoint.name} and the adapter so far" if result.checkpoint else "saved the adapter so far"
        raise TrainingInterrupted(
            f"interrupted at step {result.completed_steps} of {result.total_steps}: {where} in {output}",
            f"continue with: lorakit train --name {params.name} --resume" if params.name else "continue with --resume",
        )
    return summary


def step_summary(plan, params: TrainParams, world_size: int, precision: str, device) -> str:
    """What one optimizer step really trains on: a batch larger than the dataset takes all of it."""
    steps = plan.total_steps
    per_step = min(plan.examples_per_step, plan.num_examples)
    head = f"{steps} optimizer step{'s' if steps != 1 else ''} of {per_step} example{'s' if per_step != 1 else ''}"
    if plan.examples_per_step > plan.num_examples:
        head += (f" (every example: the batch of {plan.examples_per_step} = micro batch {params.micro_batch_size} x "
                 f"{plan.accumulation} accumulation x {world_size} process{'es' if world_size > 1 else ''} "
                 f"is larger than the {plan.num_examples} examples)")
    else:
        head += (f" (micro batch {params.micro_batch_size} x {plan.accumulation} accumulation x {world_size} "
                 f"process{'es' if world_size > 1 else ''})")
    return f"{head}, {precision} on {device}, LoRA rank {params.rank} on {','.join(params.target_modules)}."


def _has_lora_content(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    names = {entry.name for entry in folder.iterdir()}
    return bool(names & {"adapter_model.safetensors", "adapter_config.json", "adapter_model.bin"}) or any(
        name.startswith("checkpoint-") for name in names
    )


def check_output(output: Path, resume: bool, overwrite: bool) -> str:
    """Decide fresh / resume / overwrite without touching the disk."""
    from lorakit.errors import UsageError

    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other", "--resume continues a run, --overwrite starts it again")
    if output.exists() and not output.is_dir():
        raise UsageError(f"output '{output}' exists and is not a folder")
    if resume:
        if not output.is_dir():
            raise UsageError(f"nothing to resume: '{output}' does not exist", "start the run without --resume")
        if ckpt.newest_checkpoint(output) is None:
            raise UsageError(
                f"nothing to resume in '{output}': it has no complete checkpoint",
                "checkpoints are written every --save-steps and on Ctrl-C; start again with --overwrite",
            )
        return "resume"
    if _has_lora_content(output):
        if overwrite:
            return "overwrite"
        raise UsageError(
            f"a LoRA already exists at '{output}'",
            "pass --resume to continue its training, --overwrite to replace it, or choose another --name",
        )
    return "fresh"


def _prepare_output(output: Path, mode: str) -> tuple[Path | None, Path | None]:
    """Create the folder; with --overwrite move the old one aside (deleted only after success).

    Returns ``(aside, created)``: ``created`` is the outermost folder this run made (the output or a
    missing parent of it), removed again if the run fails before its first checkpoint.
    """
    aside = None
    if mode == "overwrite" and output.exists():
        aside = output.with_name(f".{output.name}.replaced-{os.getpid()}")
        os.replace(output, aside)
    created = None
    if aside is None and not output.exists():
        created = output
        while not created.parent.exists():
            created = created.parent
    output.mkdir(parents=True, exist_ok=True)
    return aside, created


def _restore_aside(output: Path, aside: Path) -> None:
    """A replacement run failed: give the old LoRA back unless the new run already saved a checkpoint."""
    if ckpt.newest_checkpoint(output) is None:
        shutil.rmtree(output, ignore_errors=True)
        os.replace(aside, output)
    else:
        warn(f"the replaced LoRA was kept at {aside}")


def saved_params(output: Path) -> dict:
    """Parameters of an earlier run in this folder (for --resume), newest checkpoint first."""
    from lorakit.training.params import PARAMS_FILE, read_config_file

    newest = ckpt.newest_checkpoint(output)
    for candidate in ([newest / PARAMS_FILE] if newest else []) + [output / PARAMS_FILE]:
        if candidate.is_file():
            return read_config_file(candidate)
    return {}


def summary_line(summary: dict) -> str:
    loss = summary.get("final_loss")
    first = summary.get("first_loss")
    loss_text = f"loss {first:.4f} -> {loss:.4f}" if loss is not None and first is not None else "no step ran"
    stopped = {"early_stop": ", stopped early", "stop_at_loss": ", stopped at --stop-at-loss"}.get(summary.get("stopped"), "")
    best = ""
    if summary.get("loaded_best"):
        best = f", best eval loss {summary['best_eval_loss']:.4f} at step {summary['best_step']} kept"
    return (
        f"Trained {summary['completed_steps']}/{summary['total_steps']} steps ({loss_text}, "
        f"{summary['tokens_per_s']:.0f} tokens/s{stopped}{best}): saved to {summary['output']}"
    )


def dump_json(summary: dict) -> str:
    return json.dumps(summary, indent=2)
