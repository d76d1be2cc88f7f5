"""train: lorakit's training step against the three strongest peer recipes, in one run.

Model: the real SmolLM2-135M-Instruct. LoRA r 8, alpha 16, dropout 0.05 on q_proj/v_proj (the
alpaca-lora recipe), AdamW lr 3e-4, linear schedule with 2 warm-up steps, grad-norm clip 1.0, no
weight decay, micro batch 4 x 2 accumulation, seed 42, cutoff 256, the same precision everywhere
(bf16 where the hardware runs it natively, else fp32).
Data: shared/data/alpaca_cleaned_1k.json through the alpaca format, trained on every token (as
alpaca-lora's train_on_inputs and the webui did); every side gets the same tokens and labels, fed in
the same order (lorakit's seeded plan; the peers read it with the sequential sampler).

Each side runs in a fresh process (so each peak RSS is its own).
lorakit side: ``lorakit.training.trainer.Trainer.step`` (what ``lorakit train`` runs per step): packed
micro-batches with per-example attention, logits only where there is a target, the frozen base
loaded in the autocast dtype.
alpaca-lora peer: ``transformers.Trainer`` + PEFT with alpaca-lora's ``finetune.py`` collator,
``DataCollatorForSeq2Seq(padding=True, pad_to_multiple_of=8)`` (each batch padded to its longest row).
webui-classic peer: ``transformers.Trainer`` + PEFT, every row padded to the cutoff (text-generation-webui).
trl-padding-free peer: TRL 1.16 ``SFTTrainer`` with ``padding_free=True`` (rows of a batch concatenated
into one with restarting position ids; without packing TRL needs ``max_length=None``).
The peers use Trainer's mixed precision (fp32 weights under bf16 autocast) as their recipes do.

Timing: one warm-up step, then 4 steps with --quick (12 otherwise); a step's time is the wall time
from the end of the previous step (the Trainer's per-step work, collation and logging included) and
its useful tokens are the examples' real tokens. Every side runs once per round (2 rounds with
--quick, 3 otherwise), the order rotating from round to round (lorakit, alpaca-lora, webui, TRL;
then alpaca-lora, webui, TRL, lorakit; ...), so load that drifts over the run favours no side; a
side's rate is the median over all its timed steps of all rounds. On the CPU the tokens per
CPU-second of each side's process are reported too, a measure that other processes sway far less.
Checked before any ratio: each side's adapter is scored on the same held-out examples by one function
(``_held_out_loss``, lorakit's token-mean evaluation); lorakit's loss must be within 0.02 nats of the
best peer's. Targets: useful tokens/s >= 1.5x the fastest peer; peak RSS <= the leanest peer's.
On CUDA the same sides run on the GPU (peak GPU memory is reported too), and with 2+ GPUs lorakit
also runs under torchrun with ``--shard fsdp2`` (tokens/s of all ranks against one GPU).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import REPO_ROOT, device_label, failed, peak_rss_in_child, progress, record, rotated

NAME = "train"
DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca_cleaned_1k.json"
SEED, MICRO, ACCUMULATION, CUTOFF, WARMUP, RANK, ALPHA, LR = 42, 4, 2, 256, 2, 8, 16, 3e-4
LOSS_TOLERANCE = 0.02
PEERS = ("alpaca-lora", "webui-classic", "trl-padding-free")
ROUNDS_QUICK, ROUNDS = 2, 3


# ---- shared by every side ----------------------------------------------------------------------
def _setting(quick: bool):
    from lorakit.loaders.devices import pick_device
    from lorakit.training.model_setup import resolve_precision
    from lorakit.training.params import TrainParams
    from lorakit.training.plan import TrainingPlan

    from benchmarks.models import smollm2

    timed, warmup = (4, 1) if quick else (12, 1)
    steps = timed + warmup
    device = pick_device()
    model_dir = smollm2()
    params = TrainParams(model=str(model_dir), rank=RANK, alpha=ALPHA, dropout=0.05, target_modules=["q_proj", "v_proj"],
                         learning_rate=LR, scheduler="linear", epochs=1, micro_batch_size=MICRO, batch_size=MICRO * ACCUMULATION,
                         warmup_steps=WARMUP * ACCUMULATION, cutoff_len=CUTOFF, seed=SEED)
    from transformers import AutoTokenizer

    from lorakit.training.dataset import DataSpec, load_examples

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples, _ = load_examples(tokenizer, DataSpec(dataset=DATA, format="alpaca", cutoff_len=CUTOFF))
    train, held_out = examples[: steps * MICRO * ACCUMULATION], examples[-(16 if quick else 48):]
    plan = TrainingPlan(len(train), MICRO, ACCUMULATION, 1, 1, SEED)
    order = [index for step in range(steps) for index in plan.step_examples(step)]
    return dict(model_dir=model_dir, device=device, precision=resolve_precision("auto", device), params=params, tokenizer=tokenizer,
                train=train, held_out=held_out, plan=plan, order=order, steps=steps, warmup=warmup)


def _held_out_loss(model, examples, device, autocast_dtype) -> float:
    """The one scoring function: lorakit's token-mean loss on packed held-out batches, for every side."""
    from lorakit.training.distributed import DistContext
    from lorakit.training.packed_attention import packed_attention
    from lorakit.training.steps import PackedLoss, evaluate

    longest = max(len(example.input_ids) for example in examples)
    loss_fn = PackedLoss(model, device, autocast_dtype)
    with packed_attention(model.get_base_model(), longest) as per_example:
        loss_fn.per_example_attention = per_example
        return evaluate(loss_fn, examples, MICRO, DistContext())


def _peak_gpu_mb(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if str(device).startswith("cuda") else None


# ---- the sides (each called in its own process through peak_rss_in_child) ---------------------
def lorakit_side(quick: bool) -> dict:
    from lorakit.training.distributed import DistContext
    from lorakit.training.model_setup import attach_lora, load_base
    from lorakit.training.trainer import Trainer

    s = _setting(quick)
    session, precision = load_base(s["params"], s["model_dir"], cpu=s["device"] == "cpu", device=s["device"])
    model = attach_lora(session.model, s["params"])
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-train-") as tmp:
        trainer = Trainer(s["params"], model, s["train"], [], session.device(), precision, DistContext(), Path(tmp), "{}",
                          show_progress=False)
        assert trainer.plan.total_steps == s["steps"]
        seconds, cpu, losses = [], [], []
        with trainer.attention():
            for step in range(s["steps"]):
                started, cpu_started = time.perf_counter(), time.process_time()
                losses.append(trainer.step(step)[0])
                _synchronise(trainer.device)
                seconds.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
        loss = _held_out_loss(trainer.model, s["held_out"], trainer.device, precision.autocast_dtype)
    return _result(s, seconds, losses, loss, precision.name, cpu)


def peer_side(peer: str, quick: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, TrainerCallback

    s = _setting(quick)
    device, precision = s["device"], s["precision"]
    base = AutoModelForCausalLM.from_pretrained(s["model_dir"], dtype=torch.float32)
    torch.manual_seed(SEED)
    model = get_peft_model(base, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    rows = [s["train"][index] for index in s["order"]]
    marks: list[tuple[float, float]] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, args, state, control, **kwargs):
            _synchronise(device)
            marks.append((time.perf_counter(), time.process_time()))

    common = dict(per_device_train_batch_size=MICRO, gradient_accumulation_steps=ACCUMULATION, learning_rate=LR, lr_scheduler_type="linear",
                  warmup_steps=WARMUP, max_steps=s["steps"], logging_steps=1, save_strategy="no", report_to=[],
                  bf16=precision.name == "bf16", use_cpu=device == "cpu", seed=SEED, optim="adamw_torch", weight_decay=0.0,
                  max_grad_norm=1.0, train_sampling_strategy="sequential", dataloader_num_workers=0, disable_tqdm=True)
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-peer-") as tmp:
        trainer = _peer_trainer(peer, model, rows, s["tokenizer"], common, tmp, StepClock())
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model.eval()
    loss = _held_out_loss(model, s["held_out"], next(model.parameters()).device, precision.autocast_dtype)
    return _result(s, [b[0] - a[0] for a, b in zip(marks, marks[1:])], losses, loss, precision.name,
                   [b[1] - a[1] for a, b in zip(marks, marks[1:])])


def _peer_trainer(peer, model, rows, tokenizer, common, tmp, clock):
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, default_data_collator

    if peer == "trl-padding-free":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        dataset = Dataset.from_list([{"input_ids": row.input_ids, "labels": row.labels} for row in rows])
        config = SFTConfig(output_dir=tmp, padding_free=True, max_length=None, packing=False, completion_only_loss=False,
                           dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False, **common)
        return SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    arguments = TrainingArguments(output_dir=tmp, remove_unused_columns=False, **common)
    if peer == "alpaca-lora":  # finetune.py: each batch padded to its longest row, to a multiple of 8
        data = [{"input_ids": row.input_ids, "attention_mask": [1] * len(row.input_ids), "labels": row.labels} for row in rows]
        collator = DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8, return_tensors="pt", padding=True)
    elif peer == "webui-classic":  # every row padded to the cutoff; pad masked by length (pad == eos here)
        data = []
        for row in rows:
            pad = CUTOFF - len(row.input_ids)
            data.append({"input_ids": torch.tensor(row.input_ids + [tokenizer.pad_token_id] * pad),
                         "attention_mask": torch.tensor([1] * len(row.input_ids) + [0] * pad),
                         "labels": torch.tensor(row.labels + [-100] * pad)})
        collator = default_data_collator
    else:
        raise ValueError(f"unknown peer {peer}")
    return Trainer(model=model, args=arguments, train_dataset=data, data_collator=collator, callbacks=[clock])


def _synchronise(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _result(s, seconds, losses, held_out, precision, cpu_seconds) -> dict:
    tokens = [sum(len(s["train"][i].input_ids) for i in s["plan"].step_examples(step)) for step in range(s["steps"])]
    warm = s["warmup"]
    return {"rates": [t / sec for t, sec in zip(tokens[warm:], seconds[warm:])],
            "cpu_rates": [t / max(sec, 1e-9) for t, sec in zip(tokens[warm:], cpu_seconds[warm:])],
            "train_losses": losses, "held_out": held_out,
            "precision": precision, "device": str(s["device"]), "gpu_mb": _peak_gpu_mb(s["device"])}


# ---- the comparison ----------------------------------------------------------------------------
def run(quick: bool) -> list[dict]:
    if not DATA.is_file():
        return [failed(NAME, f"{DATA} is missing", metric="tokens_per_s", target=">= 1.5")]
    import importlib.util

    if importlib.util.find_spec("trl") is None:
        return [failed(NAME, "TRL is not installed (pip install -c constraints.txt '.[bench]')", metric="tokens_per_s", target=">= 1.5")]
    from benchmarks.models import smollm2

    smollm2()  # converted here, once, if it never was: no side's peak memory may include the conversion
    sides = ("lorakit", *PEERS)
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    peaks: dict[str, float] = {}
    for round_index in range(ROUNDS_QUICK if quick else ROUNDS):
        for side in rotated(sides, round_index):
            progress(f"train: round {round_index + 1} {side} ({'quick' if quick else 'full'})")
            target, args = ("benchmarks.train_bench:lorakit_side", (quick,)) if side == "lorakit" else ("benchmarks.train_bench:peer_side", (side, quick))
            result, peak = peak_rss_in_child(target, *args, timeout=3600)
            runs[side].append(result)
            peaks[side] = max(peaks.get(side, 0.0), peak / 2**20)
            progress(f"train: {side}: {statistics.median(result['rates']):.0f} tok/s, held-out {result['held_out']:.4f}, "
                     f"peak {peaks[side]:.0f} MB")
    results = {side: _merged(side_runs) for side, side_runs in runs.items()}
    return _records(results, peaks, quick) + _multi_gpu(quick)


def _merged(side_runs: list[dict]) -> dict:
    """One side's rounds as one result: every timed step's rate; the held-out loss of its first round."""
    merged = dict(side_runs[0])
    merged["rates"] = [rate for run in side_runs for rate in run["rates"]]
    merged["cpu_rates"] = [rate for run in side_runs for rate in run["cpu_rates"]]
    merged["held_out_spread"] = max(run["held_out"] for run in side_runs) - min(run["held_out"] for run in side_runs)
    return merged


def _records(results, peaks, quick) -> list[dict]:
    mine = results["lorakit"]
    label = device_label(mine["device"])
    fastest = max(PEERS, key=lambda p: statistics.median(results[p]["rates"]))
    leanest = min(PEERS, key=lambda p: peaks[p])
    best_loss = min(results[p]["held_out"] for p in PEERS)
    ok = mine["held_out"] <= best_loss + LOSS_TOLERANCE
    losses = ", ".join(f"{side} {results[side]['held_out']:.4f}" for side in ("lorakit", *PEERS))
    checked = f"held-out loss (one scorer, same examples): {losses}"
    note = (f"SmolLM2-135M, alpaca_cleaned_1k, micro batch {MICRO} x {ACCUMULATION}, cutoff {CUTOFF}, {mine['precision']}, "
            f"{'4' if quick else '12'} timed steps per side and round, {ROUNDS_QUICK if quick else ROUNDS} rounds in rotating order")
    rows = [record(NAME, "tokens_per_s", mine["rates"], results[fastest]["rates"], target=">= 1.5", checked=checked, check_ok=ok,
                   device=label, unit="tok/s", note=f"against the fastest peer, {fastest}; {note}"),
            record(NAME, "peak_rss_mb", peaks["lorakit"], peaks[leanest], target="<= 1.0", checked=checked, check_ok=ok, device=label,
                   unit="MB", note=f"against the leanest peer, {leanest}; each side in its own process")]
    if not str(mine["device"]).startswith("cuda"):  # CPU time is steadier than wall time on a shared machine
        cpu_fastest = max(PEERS, key=lambda p: statistics.median(results[p]["cpu_rates"]))
        rows.append(record(NAME, "tokens_per_cpu_s", mine["cpu_rates"], results[cpu_fastest]["cpu_rates"], checked=checked, check_ok=ok,
                           device=label, unit="tok/CPU-s", note=f"useful tokens per CPU-second of the side's process, against the "
                           f"fastest peer by that measure, {cpu_fastest}"))
    for peer in PEERS:
        rows.append(record(NAME, f"tokens_per_s_vs_{peer}", mine["rates"], results[peer]["rates"], checked=checked, check_ok=ok,
                           device=label, unit="tok/s", note=f"peak RSS {peaks['lorakit']:.0f} MB vs {peaks[peer]:.0f} MB"
                           + (f", peak GPU {mine['gpu_mb']} vs {results[peer]['gpu_mb']} MB" if mine["gpu_mb"] else "")))
    return rows


def _multi_gpu(quick: bool) -> list[dict]:
    """With 2+ CUDA GPUs: lorakit under torchrun with --shard fsdp2 against the same run on one GPU."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return []
    from benchmarks.harness import run_command
    from benchmarks.models import smollm2

    rates = {}
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-fsdp-") as tmp:
        for label, launcher in (("one", [sys.executable, "-m", "lorakit"]),
                                ("sharded", [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={count}", "-m", "lorakit"])):
            out = Path(tmp) / label
            argv = [*launcher, "train", str(smollm2()), "--dataset", str(DATA), "--format", "alpaca", "--output", str(out), "--rank", str(RANK),
                    "--alpha", str(ALPHA), "--micro-batch-size", str(MICRO), "--batch-size", str(MICRO * ACCUMULATION * count),
                    "--max-steps", "10" if quick else "40", "--json"] + (["--shard", "fsdp2"] if label == "sharded" else [])
            done = run_command(argv, timeout=1800)
            if done.returncode != 0:
                return [failed(NAME, f"torchrun --shard fsdp2 failed: {done.stderr.strip().splitlines()[-1:]}", metric="fsdp2_tokens_per_s")]
            rates[label] = json.loads((out / "training_log.json").read_text())["summary"]["tokens_per_s"]
    return [record(NAME, "fsdp2_tokens_per_s", rates["sharded"], rates["one"], device=device_label("cuda"), unit="tok/s",
                   note=f"torchrun --nproc_per_node={count} --shard fsdp2 against one GPU, same global batch per step")]
