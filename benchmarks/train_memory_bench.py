"""train_memory: activation memory and tokens/s of a training step with --gradient-checkpointing against without.

Model: a synthetic Llama of 1.1B parameters (TinyLlama's shape: hidden 2048, intermediate 5632, 22
layers, 32 heads / 4 KV heads, vocab 32000), random weights, bf16 where the hardware runs bf16
natively (lorakit's ``auto`` precision), else fp32. LoRA r 16, alpha 32, no dropout, on q_proj/v_proj.
Data: one packed micro-batch at cutoff 1024 (two 512-token examples, every token a target), the
same token ids on both sides.
Both sides run lorakit's own step (``PackedLoss`` inside the attention context ``lorakit train``
uses, then ``backward``); the lorakit side has ``--gradient-checkpointing`` on (non-reentrant, every
decoder layer), the reference is the same step without it. Each side runs in its own fresh process
(memory does not carry over): the model is built, a first step warms the allocator and oneDNN, then
the measured step(s). Activation memory of a step = peak RSS during the step (VmHWM reset through
/proc/self/clear_refs, malloc_trim before) minus RSS just before it; the process's peak RSS is also
reported. On a CUDA device the same steps run there and the activation memory is torch's peak
allocated memory during the step minus what was allocated before it. ``--quick``: one measured
step per side, else two.
Checked before the ratio: both sides computed the same loss (within 1e-3 relative) and the same
LoRA gradient norm (within 1 %).
Target: activation memory <= 0.60x without checkpointing (at least 40 % less); the tokens/s cost
of the recomputation is reported without a target.
"""

from __future__ import annotations

import ctypes
import gc
import time
from pathlib import Path

from benchmarks.harness import device_label, failed, peak_rss_in_child, progress, record

NAME = "train_memory"
CONFIG = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
              vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False)
CUTOFF, EXAMPLES, SEED = 1024, 2, 42
MB = 1024 * 1024


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _settle() -> int:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    return _rss()


def measure(checkpointing: bool, steps: int) -> dict:
    """One side, in its own process: build, warm up, then ``steps`` measured steps (on the GPU when there is one)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lorakit.loaders.devices import pick_device
    from lorakit.output.quiet import quiet_libraries
    from lorakit.training.activation_memory import enable
    from lorakit.training.attention_choice import training_attention
    from lorakit.training.dataset import Example
    from lorakit.training.model_setup import attach_lora, resolve_precision
    from lorakit.training.params import TrainParams
    from lorakit.training.steps import PackedLoss

    quiet_libraries()
    device = str(pick_device())
    cuda = device.startswith("cuda")
    precision = resolve_precision("auto", device)
    torch.manual_seed(SEED)
    config = LlamaConfig(**CONFIG)
    config._attn_implementation = "sdpa"
    dtype = precision.autocast_dtype or torch.float32
    started = time.perf_counter()
    with torch.device("cpu"):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            model = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(previous)
    build_seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    model.to(device)
    peft_model = attach_lora(model, TrainParams(rank=16, alpha=32, dropout=0.0, seed=SEED))
    if checkpointing:
        enable(peft_model)
    peft_model.train()
    generator = torch.Generator().manual_seed(SEED)
    length = CUTOFF // EXAMPLES
    examples = []
    for _ in range(EXAMPLES):
        ids = torch.randint(10, CONFIG["vocab_size"], (length,), generator=generator).tolist()
        examples.append(Example(ids, list(ids), ""))
    loss_fn = PackedLoss(peft_model, device, precision.autocast_dtype)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]

    def one_step() -> tuple[float, float, float, int]:
        for p in trainable:
            p.grad = None
        before = _settle()
        if cuda:  # on a GPU the activations live in its memory: torch's own counters
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        started = time.perf_counter()
        loss_sum, targets = loss_fn(examples)
        (loss_sum / targets).backward()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() if cuda else _hwm()
        norm = float(torch.norm(torch.stack([p.grad.float().norm() for p in trainable])))
        return float(loss_sum.detach()) / targets, norm, seconds, peak - before

    with training_attention(peft_model.get_base_model(), device, precision.autocast_dtype, length) as path:
        loss_fn.per_example_attention = path.segments
        one_step()  # warm-up: allocator arenas, oneDNN primitives
        runs = [one_step() for _ in range(steps)]
    return {
        "loss": runs[-1][0], "grad_norm": runs[-1][1], "seconds": [run[2] for run in runs],
        "activation_bytes": [run[3] for run in runs], "tokens": CUTOFF, "parameters": parameters,
        "precision": precision.name, "build_seconds": build_seconds, "attention": path.description,
        "threads": torch.get_num_threads(), "device": device,
    }


def run(quick: bool) -> list[dict]:
    steps = 1 if quick else 2
    sides = {}
    for name, checkpointing in (("checkpointing", True), ("plain", False)):
        progress(f"{NAME}: {name} side (fresh process, {steps} measured step{'s' if steps > 1 else ''})")
        try:
            result, peak = peak_rss_in_child("benchmarks.train_memory_bench:measure", checkpointing, steps, timeout=1200)
        except Exception as error:  # noqa: BLE001 - reported as a failed benchmark
            return [failed(NAME, f"{name} side: {error}".splitlines()[0])]
        result["peak_rss"] = peak
        sides[name] = result
        progress(f"{NAME}: {name}: {[round(b / MB) for b in result['activation_bytes']]} MB activations, "
                 f"{[round(s, 1) for s in result['seconds']]} s per step, peak RSS {peak / MB:.0f} MB")
    gc_side, plain = sides["checkpointing"], sides["plain"]
    same_loss = abs(gc_side["loss"] - plain["loss"]) <= 1e-3 * abs(plain["loss"])
    same_grad = abs(gc_side["grad_norm"] - plain["grad_norm"]) <= 0.01 * abs(plain["grad_norm"])
    checked = (f"same loss ({gc_side['loss']:.4f} vs {plain['loss']:.4f}) and LoRA grad norm "
               f"({gc_side['grad_norm']:.4g} vs {plain['grad_norm']:.4g}) on the same {CUTOFF}-token micro-batch")
    ok = same_loss and same_grad
    device = f"{device_label(plain['device'])}, {plain['precision']}, {plain['parameters'] / 1e9:.2f}B-parameter synthetic Llama, {plain['attention']}"
    rate = lambda side: [side["tokens"] / seconds for seconds in side["seconds"]]  # noqa: E731
    return [
        record(NAME, "activation_memory", [b / MB for b in gc_side["activation_bytes"]], [b / MB for b in plain["activation_bytes"]],
               target="<= 0.60", checked=checked, check_ok=ok, device=device, unit="MB",
               note="peak RSS during one step minus RSS before it, with vs without --gradient-checkpointing"),
        record(NAME, "tokens_per_s", rate(gc_side), rate(plain), checked=checked, check_ok=ok, device=device, unit="tok/s",
               note="the cost of recomputing each layer in the backward"),
        record(NAME, "peak_rss", gc_side["peak_rss"] / MB, plain["peak_rss"] / MB, checked=checked, check_ok=ok, device=device, unit="MB",
               note="whole process: model build, warm-up and measured steps"),
    ]
