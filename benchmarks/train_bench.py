"""train: useful (non-pad) tokens/s of lorakit's training step against transformers Trainer + PEFT.

Model: the real SmolLM2-135M-Instruct. LoRA r 8, alpha 16, dropout 0.05 on q_proj/v_proj (the
alpaca-lora recipe), AdamW lr 3e-4, linear schedule with 2 warm-up steps, grad-norm clip 1.0,
micro batch 4 x 2 accumulation, seed 42, cutoff 256.
Data: shared/data/alpaca_cleaned_1k.json through the alpaca format, trained on every token (as
alpaca-lora's train_on_inputs and the webui did); the same tokens and labels on both sides.
lorakit side: ``lorakit.training.trainer.Trainer.step`` (what ``lorakit train`` runs per optimizer
step): micro-batches packed into one row, per-example attention, logits only where there is a
target, bf16 base weights under bf16 autocast where the hardware runs bf16 natively (its default).
Reference: ``transformers.Trainer.train()`` on a PEFT model, rows padded to the cutoff
(alpaca-lora / text-generation-webui), its mixed precision (``bf16=True``) where supported, fed the
same micro-batches in the same order (sequential sampler over lorakit's shuffled plan).
Interleaved per optimizer step (lorakit step i, reference step i, ...) in one process: the
reference Trainer runs in a thread that a callback holds between steps (its logging and the
collation of its next batch count in its own turn). One warm-up step, then 4
steps with --quick, 12 otherwise. A step's useful tokens are the examples' real tokens; its time is
the wall time of that side's turn: lorakit's includes packing the batch, the reference's includes
its Trainer loop's per-step work (logging the previous step, collating the next padded batch).
Run with ``--threads 1`` on a shared machine: oversubscribed OpenMP threads make the spread huge.
Checked before the ratio: after the same steps both adapters are scored by the same code on the
same held-out examples; lorakit's loss must be equal or lower (within 0.02 nats of noise).
Target: tokens/s >= 1.5x the reference. Also reported: model-FLOP utilisation of both sides (4N
FLOPs per useful token plus causal attention, N = the base's parameters) against the bf16/fp32
matmul peak measured in every round of the same run (a third interleaved side).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
from pathlib import Path

from benchmarks.harness import (
    REPO_ROOT,
    device_label,
    failed,
    interleave,
    progress,
    record,
)
from benchmarks.models import smollm2

NAME = "train"
DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca_cleaned_1k.json"
SEED, MICRO, ACCUMULATION, CUTOFF, WARMUP = 42, 4, 2, 256, 2
LOSS_TOLERANCE = 0.02


def _examples(tokenizer):
    from lorakit.training.dataset import DataSpec, load_examples

    examples, _ = load_examples(tokenizer, DataSpec(dataset=DATA, format="alpaca", cutoff_len=CUTOFF))
    return examples


def _lorakit_trainer(model_dir, examples, device, output):
    from lorakit.training.distributed import DistContext
    from lorakit.training.model_setup import attach_lora, load_base
    from lorakit.training.params import TrainParams
    from lorakit.training.trainer import Trainer

    params = TrainParams(model=str(model_dir), rank=8, alpha=16, dropout=0.05, target_modules=["q_proj", "v_proj"], learning_rate=3e-4,
                         scheduler="linear", epochs=1, micro_batch_size=MICRO, batch_size=MICRO * ACCUMULATION,
                         warmup_steps=WARMUP * ACCUMULATION, cutoff_len=CUTOFF, seed=SEED)
    session, precision = load_base(params, model_dir, cpu=device == "cpu", device=device)
    model = attach_lora(session.model, params)
    trainer = Trainer(params, model, examples, [], session.device(), precision, DistContext(), output, params.to_json(), show_progress=False)
    return trainer, precision


class ReferenceRun:
    """transformers Trainer + PEFT in a thread, released one optimizer step at a time."""

    def __init__(self, model_dir, examples, order, steps, device, bf16, output):
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import (
            AutoModelForCausalLM,
            Trainer,
            TrainerCallback,
            TrainingArguments,
            default_data_collator,
        )

        rows = []
        for index in order:  # padded to the cutoff, pad positions masked by length (never by id: pad == eos here)
            example = examples[index]
            pad = CUTOFF - len(example.input_ids)
            rows.append({
                "input_ids": torch.tensor(example.input_ids + [0] * pad),
                "attention_mask": torch.tensor([1] * len(example.input_ids) + [0] * pad),
                "labels": torch.tensor(example.labels + [-100] * pad),
            })
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        torch.manual_seed(SEED)
        self.model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
        self.go, self.done, self.error = threading.Semaphore(0), threading.Semaphore(0), None
        run = self

        class HandOff(TrainerCallback):
            # The thread holds at the end of each step (after the main thread gets "done"), so its
            # logging and the next batch's collation run inside its own timed turn, never beside
            # lorakit's step.
            def on_train_begin(self, args, state, control, **kwargs):
                run.go.acquire()

            def on_step_end(self, args, state, control, **kwargs):
                run.done.release()
                run.go.acquire()

        arguments = TrainingArguments(
            output_dir=str(output), per_device_train_batch_size=MICRO, gradient_accumulation_steps=ACCUMULATION, learning_rate=3e-4,
            lr_scheduler_type="linear", warmup_steps=WARMUP, max_steps=steps, logging_steps=1, save_strategy="no", report_to=[],
            bf16=bf16, use_cpu=device == "cpu", seed=SEED, optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0,
            train_sampling_strategy="sequential", dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
        )
        self.trainer = Trainer(model=self.model, args=arguments, train_dataset=rows, data_collator=default_data_collator, callbacks=[HandOff()])
        self.thread = threading.Thread(target=self._train, daemon=True)
        self.thread.start()

    def _train(self):
        try:
            self.trainer.train()
        except BaseException as error:  # noqa: BLE001 - reported by step()
            self.error = error
            self.done.release()

    def step(self):
        self.go.release()
        self.done.acquire()
        if self.error is not None:
            raise self.error

    def finish(self):
        self.go.release()  # let the thread leave its last on_step_end
        self.thread.join(timeout=600)

    def losses(self) -> list[float]:
        return [entry["loss"] for entry in self.trainer.state.log_history if "loss" in entry]


def _held_out_loss(model, examples, device, autocast_dtype) -> float:
    from lorakit.training.distributed import DistContext
    from lorakit.training.steps import PackedLoss, evaluate

    return evaluate(PackedLoss(model, device, autocast_dtype), examples, MICRO, DistContext())


def _matmul_peak(device: str, dtype) -> float:
    """FLOP/s of a large square matmul in the training dtype, best of several (the achievable peak)."""
    import time

    import torch

    size = 1024 if device == "cpu" else 8192
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(8):
        if device != "cpu":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - started) / 4)
    return 2 * size**3 / best


def _step_flops(lengths, parameters: int, layers: int, hidden: int) -> float:
    """4N per token (forward 2N + activation gradients 2N; frozen weights get no weight gradient)
    plus causal attention: QK^T and AV are 2 L^2 d FLOPs per layer forward, x3 with their backward."""
    return sum(4 * parameters * length + 6 * length * length * hidden * layers for length in lengths)


def run(quick: bool) -> list[dict]:
    import torch
    from transformers import AutoTokenizer

    from lorakit.loaders.devices import pick_device

    if not DATA.is_file():
        return [failed(NAME, f"{DATA} is missing", metric="tokens_per_s", target=">= 1.5")]
    timed_steps, warmup_steps = (4, 1) if quick else (12, 1)
    steps = timed_steps + warmup_steps
    model_dir = smollm2()
    device = pick_device()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = _examples(tokenizer)
    per_step = MICRO * ACCUMULATION
    train_examples, held_out = examples[: steps * per_step], examples[-(16 if quick else 48):]
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-train-") as tmp:
        progress("train: loading both sides")
        trainer, precision = _lorakit_trainer(model_dir, train_examples, device, Path(tmp) / "lorakit")
        plan = trainer.plan
        assert plan.total_steps == steps
        order = [index for step in range(steps) for index in plan.step_examples(step)]
        reference = ReferenceRun(model_dir, train_examples, order, steps, device, precision.name == "bf16", Path(tmp) / "reference")
        position = {"lorakit": 0, "reference": 0}
        lorakit_losses = []

        def useful_tokens(step: int) -> int:
            return sum(len(train_examples[index].input_ids) for index in plan.step_examples(step))

        def lorakit_side():
            step = position["lorakit"]
            lorakit_losses.append(trainer.step(step)[0])
            position["lorakit"] += 1
            return {"tokens": useful_tokens(step), "lengths": [len(train_examples[i].input_ids) for i in plan.step_examples(step)]}

        def reference_side():
            step = position["reference"]
            reference.step()
            position["reference"] += 1
            return {"tokens": useful_tokens(step), "lengths": [len(train_examples[i].input_ids) for i in plan.step_examples(step)]}

        peak_device, peak_dtype = str(trainer.device).split(":")[0], precision.autocast_dtype or torch.float32

        def peak_side():  # the matmul peak, measured in every round, so each MFU has its own yardstick
            return {"peak": _matmul_peak(peak_device, peak_dtype)}

        progress(f"train: {steps} interleaved optimizer steps per side ({precision.name} on {device})")
        with trainer.attention():
            samples = interleave({"lorakit": lorakit_side, "reference": reference_side, "peak": peak_side},
                                 repeats=timed_steps, warmup=warmup_steps)
        reference.finish()
        progress("train: scoring both adapters on held-out examples")
        with trainer.attention():
            mine = _held_out_loss(trainer.model, held_out, trainer.device, precision.autocast_dtype)
        theirs = _held_out_loss(reference.model, held_out, trainer.device, precision.autocast_dtype)
        reference_losses = reference.losses()
        config = trainer.model.get_base_model().config
        parameters = sum(p.numel() for p in trainer.model.get_base_model().parameters())

    label = device_label(device)
    peaks = [s["peak"] for s in samples.pop("peak")]
    rates = {side: [s["tokens"] / s["seconds"] for s in samples[side]] for side in samples}
    ok = mine <= theirs + LOSS_TOLERANCE
    checked = (f"held-out loss {mine:.4f} vs {theirs:.4f} after {steps} steps (final train loss "
               f"{lorakit_losses[-1]:.4f} vs {reference_losses[-1]:.4f})")
    note = (f"SmolLM2-135M, alpaca_cleaned_1k, micro batch {MICRO} x {ACCUMULATION}, cutoff {CUTOFF}, {precision.name}; "
            f"reference pads every row to {CUTOFF} tokens")
    mfu = {side: [_step_flops(s["lengths"], parameters, config.num_hidden_layers, config.hidden_size) / s["seconds"] / peak
                  for s, peak in zip(samples[side], peaks)] for side in samples}
    return [
        record(NAME, "tokens_per_s", rates["lorakit"], rates["reference"], target=">= 1.5", checked=checked, check_ok=ok,
               device=label, unit="tok/s", note=note),
        record(NAME, "mfu", mfu["lorakit"], mfu["reference"], checked=checked, check_ok=ok, device=label,
               note=f"4N FLOPs per useful token + causal attention, N = {parameters / 1e6:.1f}M; measured {precision.name} "
                    f"matmul peak {statistics.median(peaks) / 1e9:.0f} GFLOP/s (median of the rounds; each round's MFU uses its own)"),
    ]
