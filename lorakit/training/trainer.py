"""The training loop.

A custom loop rather than transformers' Trainer, for three reasons: exact resume (the data position
is the step number, see :mod:`lorakit.training.plan`, and dropout is reseeded from (seed, step, rank),
so a run killed at any moment and resumed from its last checkpoint ends with the same weights);
packing with per-example attention and logits only where there is a target (Trainer's collators
pad); and one loss normalisation (summed token loss / target tokens of the whole step, across
micro-batches and ranks) that makes batch B x 1 and B/k x k train identically.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.training import checkpoint as ckpt
from lorakit.training.batching import count_target_tokens
from lorakit.training.distributed import DistContext, barrier, broadcast_flag
from lorakit.training.optim import (
    make_optimizer,
    make_scheduler,
    warmup_optimizer_steps,
)
from lorakit.training.attention_choice import training_attention
from lorakit.training.held_out import EvalHistory
from lorakit.training.params import TrainParams
from lorakit.training.plan import TrainingPlan
from lorakit.training.progress import TokenRate, TrainingProgress
from lorakit.training.sharding import is_sharded, passes
from lorakit.training.steps import PackedLoss, evaluate, exchange, trainable_parameters

MAX_GRAD_NORM = 1.0  # transformers Trainer's default, which text-generation-webui trained with


class TrainingInterrupted(LorakitError):
    exit_code = 130


@dataclass
class RunResult:
    log: list[dict] = field(default_factory=list)
    completed_steps: int = 0
    total_steps: int = 0
    stopped: str = "completed"  # completed / stop_at_loss / early_stop / interrupted
    tokens_per_s: float = 0.0
    train_seconds: float = 0.0
    eval_loss: float | None = None
    checkpoint: Path | None = None
    rank_fingerprints: list = field(default_factory=list)
    best_step: int | None = None  # the evaluation with the lowest loss
    best_eval_loss: float | None = None
    loaded_best: Path | None = None  # the checkpoint whose weights the final adapter holds (--load-best)
    attention: str = ""  # the attention path that ran (see training/attention_choice.py)


class Trainer:
    def __init__(self, params: TrainParams, peft_model, examples, eval_examples, device, precision, ctx: DistContext,
                 output: Path, params_json: str, show_progress: bool = True, metrics=None):
        self.p = params
        self.model = peft_model
        self.examples = examples
        self.eval_examples = eval_examples
        self.device = device
        self.precision = precision
        self.ctx = ctx
        self.output = Path(output)
        self.params_json = params_json
        self.show_progress = show_progress and ctx.is_main
        self.metrics = metrics
        self.loss_fn = PackedLoss(peft_model, device, precision.autocast_dtype)
        self.sharded = is_sharded(peft_model)  # --shard fsdp2 (training/sharding.py)
        self.parameters = trainable_parameters(peft_model)
        accumulation = params.grad_accumulation(ctx.world_size)
        self.plan = TrainingPlan(len(examples), params.micro_batch_size, accumulation, ctx.world_size, params.epochs, params.seed,
                                 params.max_steps)
        self.targets = [count_target_tokens([example.labels]) for example in examples]
        self.lengths = [len(example.input_ids) for example in examples]
        self.optimizer = make_optimizer(params.optimizer, self.parameters, params.learning_rate, str(device), params.weight_decay)
        self.warmup_steps = warmup_optimizer_steps(params.warmup_steps, accumulation * ctx.world_size)
        self.scheduler = make_scheduler(params.scheduler, self.optimizer, self.warmup_steps, self.plan.total_steps)
        self.scaler = None
        if precision.name == "fp16":
            import torch

            self.scaler = torch.amp.GradScaler(str(device).split(":")[0])
        self._interrupted = False  # set by Ctrl-C on this rank
        self._stop_agreed = False  # set when any rank was interrupted, after the step's exchange
        self.attention_path = None  # set inside attention()

    # ---- state ---------------------------------------------------------------------------------
    def data_state(self) -> dict:
        return {
            "num_examples": len(self.examples), "examples_per_step": self.plan.examples_per_step,
            "steps_per_epoch": self.plan.steps_per_epoch, "total_tokens": sum(self.lengths),
        }

    def resume(self, folder: Path) -> tuple[int, list[dict]]:
        state = ckpt.read_state(folder)
        saved, now = state.get("data", {}), self.data_state()
        for key, what in (("num_examples", "examples"), ("examples_per_step", "examples per optimizer step"), ("total_tokens", "tokens")):
            if key in saved and saved[key] != now[key]:
                raise LorakitError(
                    f"cannot resume from {folder.name}: it was trained on {saved[key]} {what}, this run has {now[key]}",
                    "resume with the same dataset, cutoff and batch settings (and process count), or start again with --overwrite",
                )
        state = ckpt.load_checkpoint(folder, self.model, self.optimizer, self.scheduler, self.scaler, self.device)
        return int(state["step"]), list(state.get("log", []))

    def save(self, step: int, log: list[dict]) -> Path | None:
        """Rank 0 writes; every rank learns whether it worked (so none waits forever)."""
        folder, ok, error = None, True, None
        if self.ctx.is_main:
            state = {"epoch": self.plan.epoch_of(step), "total_steps": self.plan.total_steps, "data": self.data_state(),
                     "structural": self.p.structural(), "world_size": self.ctx.world_size, "log": log}
            try:
                folder = ckpt.save_checkpoint(self.output, step, self.model, self.optimizer, self.scheduler, self.scaler, state, self.params_json)
            except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
                ok, error = False, exc
        if not broadcast_flag(self.ctx, ok):
            if error is not None:
                raise error
            raise LorakitError(f"rank 0 failed to save checkpoint-{step}")
        barrier(self.ctx)
        return folder

    # ---- the loop ------------------------------------------------------------------------------
    def _on_sigint(self, signum, frame):
        if self._interrupted:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self._interrupted = True

    def rank_fingerprints(self) -> list[list[float]]:
        """(sum, sum of squares) of the LoRA weights on every rank; ranks that differ are an error."""
        import torch

        values = torch.stack([torch.stack([p.detach().double().sum(), p.detach().double().pow(2).sum()]) for p in self.parameters]).sum(0)
        if not self.ctx.enabled:
            return [values.tolist()]
        import torch.distributed as dist

        values = values.to(self.ctx.device)
        gathered = [torch.zeros_like(values) for _ in range(self.ctx.world_size)]
        dist.all_gather(gathered, values)
        prints = [item.cpu().tolist() for item in gathered]
        if any(item != prints[0] for item in prints):
            raise LorakitError(f"the ranks ended with different LoRA weights ({prints})", "this is a bug; please report it")
        return prints

    @contextlib.contextmanager
    def attention(self):
        """The fast paths of a training forward; enter it around :meth:`step` and evaluation.

        - flash-attention varlen or per-example SDPA on packed rows (see training/attention_choice.py);
        - under autocast, PEFT's cast of every LoRA input to the adapter's fp32 dtype is skipped:
          autocast runs the LoRA matmuls in bf16/fp16 anyway, so the cast only added two copies
          of the activations per LoRA layer (and a fp32 dropout mask) for nothing.
        """
        from peft.helpers import disable_input_dtype_casting

        longest = max(self.lengths + [len(example.input_ids) for example in self.eval_examples])
        base = self.model.get_base_model()
        with training_attention(base, self.device, self.precision.autocast_dtype, longest) as path, \
                disable_input_dtype_casting(self.model, active=self.precision.autocast_dtype is not None):
            self.attention_path = path
            self.loss_fn.per_example_attention = path.segments
            try:
                yield
            finally:
                self.loss_fn.per_example_attention = False

    def step(self, step: int) -> tuple[float, float, float]:
        """Optimizer step ``step`` (0-based): (loss, grad norm, learning rate). Call inside :meth:`attention`."""
        self._seed_step(step)
        self.model.train()
        return self._train_step(step)

    def _seed_step(self, step: int) -> None:
        import torch

        torch.manual_seed((self.p.seed * 1_000_003 + step) * 64 + self.ctx.rank)

    def run(self, start_step: int = 0, log: list[dict] | None = None) -> RunResult:
        import torch

        log = list(log or [])
        result = RunResult(log=log, completed_steps=start_step, total_steps=self.plan.total_steps)
        rate = TokenRate()
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        last_checkpoint = ckpt.newest_checkpoint(self.output)
        history = EvalHistory.from_log(log)  # a resumed run continues the same best / patience count
        # Resuming a run that stopped early: its last evaluation already used up the patience.
        stopped_early = bool(log) and "eval_loss" in log[-1] and history.should_stop(self.p.early_stopping_patience)
        last_step = start_step if stopped_early else self.plan.total_steps
        try:
            with self.attention(), TrainingProgress(self.plan.total_steps, start_step, self.show_progress) as progress:
                result.attention = self.attention_path.description
                if stopped_early:
                    result.stopped = "early_stop"
                    progress.note(f"That run stopped early (no lower evaluation loss in {history.since_best} evaluations): nothing left to train.")
                for step in range(start_step, last_step):
                    rate.start()
                    loss, grad_norm, lr = self.step(step)
                    done = step + 1
                    tokens = sum(self.lengths[i] for i in self.plan.step_examples(step))
                    tokens_per_s = rate.stop(tokens)
                    entry = {"step": done, "epoch": round(self.plan.epoch_of(done), 4), "loss": loss,
                             "learning_rate": lr, "tokens_per_s": round(tokens_per_s, 2),
                             "tokens": tokens, "grad_norm": grad_norm}
                    improved = False
                    if self.eval_examples and self.p.eval_steps and (done % self.p.eval_steps == 0 or done == self.plan.total_steps):
                        entry["eval_loss"] = result.eval_loss = evaluate(self.loss_fn, self.eval_examples, self.p.micro_batch_size, self.ctx, self.sharded)
                        improved = history.add(done, entry["eval_loss"])
                    log.append(entry)
                    result.completed_steps = done
                    if self.metrics is not None:
                        self.metrics.log(entry)
                    progress.update(done, entry["epoch"], loss, entry["learning_rate"], tokens_per_s)
                    if self._stop_agreed:
                        result.stopped = "interrupted"
                        result.checkpoint = self.save(done, log)
                        break
                    stop = None
                    if self.p.stop_at_loss and loss < self.p.stop_at_loss:
                        stop = "stop_at_loss"
                        progress.note(f"Loss {loss:.4f} is below --stop-at-loss {self.p.stop_at_loss:g}: stopping at step {done}.")
                    elif "eval_loss" in entry and history.should_stop(self.p.early_stopping_patience):
                        stop = "early_stop"
                        progress.note(f"No lower evaluation loss in {history.since_best} evaluations (best {history.best_loss:.4f} "
                                      f"at step {history.best_step}): stopping early at step {done}.")
                    scheduled = bool(self.p.save_steps) and (done % self.p.save_steps == 0 or done == self.plan.total_steps)
                    # --load-best keeps a checkpoint of every new best, whatever --save-steps says.
                    if scheduled or (improved and self.p.load_best) or (stop and self.p.save_steps):
                        result.checkpoint = last_checkpoint = self.save(done, log)
                    if stop:
                        result.stopped = stop
                        break
        except _NonFinite as error:
            where = f"the last good checkpoint is {last_checkpoint.name}" if last_checkpoint else "no checkpoint was saved"
            raise LorakitError(
                f"the loss became {error.value} at step {error.step}; training stopped and nothing of that step was kept ({where})",
                "lower --learning-rate, use --precision fp32, or check the data",
            ) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        result.best_step, result.best_eval_loss = history.best_step, history.best_loss
        if self.p.load_best and result.stopped != "interrupted" and history.best_step is not None:
            result.loaded_best = self._load_best(history.best_step, result.completed_steps)
        result.rank_fingerprints = self.rank_fingerprints()
        result.tokens_per_s = rate.overall
        result.train_seconds = rate.seconds
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return result

    def _load_best(self, best_step: int, completed: int) -> Path | None:
        """Put the weights of checkpoint-BEST back (None when it is missing: the last weights stay)."""
        folder = self.output / f"checkpoint-{best_step}"
        if best_step == completed:
            return folder  # the weights in memory are the best ones
        if not any(step == best_step for step, _ in ckpt.complete_checkpoints(self.output)):
            return None
        ckpt.load_adapter_weights(folder, self.model, self.device)
        return folder

    def _train_step(self, step: int) -> tuple[float, float, float]:
        import torch

        step_targets = sum(self.targets[i] for i in self.plan.step_examples(step))
        denominator = max(step_targets, 1)
        local_loss = 0.0
        for indices, counted in passes(self.plan.all_micro_batches(step), self.ctx.rank, self.ctx.world_size, self.sharded):
            loss_sum, _ = self.loss_fn([self.examples[i] for i in indices])
            if not counted:  # a padding pass: FSDP needs the same number of passes on every rank
                loss_sum = loss_sum * 0.0
            scaled = loss_sum / denominator
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            scaled.backward()
            local_loss += float(loss_sum.detach())
        # Only the exchanged flag counts: every rank must stop (and save) after the same step.
        loss_sum, self._stop_agreed = exchange(self.ctx, self.parameters, local_loss, self._interrupted)
        loss = loss_sum / denominator
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            raise _NonFinite(step + 1, loss)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, MAX_GRAD_NORM))
        lr = self.scheduler.get_last_lr()[0]
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, grad_norm, lr


class _NonFinite(Exception):
    def __init__(self, step: int, value: float):
        super().__init__(step, value)
        self.step, self.value = step, value

