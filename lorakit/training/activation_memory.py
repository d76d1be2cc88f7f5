"""Gradient (activation) checkpointing, and an estimate of what the activations of a micro-batch cost.

With ``--gradient-checkpointing`` every decoder layer keeps only its input during the forward and
recomputes the rest in the backward (``torch.utils.checkpoint`` in its non-reentrant form). The
non-reentrant form matters here: it needs no ``requires_grad`` input (the embedding of a LoRA model
is frozen), passes keyword arguments (the packed-attention segment boundaries) through, and
replays the RNG state, so dropout masks in the recomputation equal the first forward's and a run
with checkpointing makes the same update as one without (and resumes exactly).

It is off by default: on the CPU memory is rarely what stops a LoRA run, and the recomputation
costs about a third more compute per step. On a GPU it is what lets a 7B LoRA train at cutoff 2048
on one card, and :func:`advice` says so when the estimate does not fit next to the model.
"""

from __future__ import annotations

from lorakit.errors import UsageError

GIB = 1024**3
# Elements kept per token and layer (times the activation dtype's bytes), and bytes per token and
# vocabulary entry for the logits and their gradient (fp32): fitted to benchmarks/train_memory_bench.py
# on a 1.1B Llama at 1024 tokens, bf16 autocast, LoRA on q,v (2850 MB without checkpointing, 802 MB
# with: about 100 MB per layer, about 600 MB for the logits side).
_FULL_PER_HIDDEN, _FULL_PER_INTERMEDIATE = 12, 5
_LOGIT_BYTES = 18


def enable(peft_model) -> None:
    """Checkpoint every decoder layer of the PEFT model's base (non-reentrant)."""
    base = peft_model.get_base_model()
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise UsageError(f"{type(base).__name__} does not support --gradient-checkpointing", "train without it")
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def is_enabled(peft_model) -> bool:
    base = peft_model.get_base_model()
    return bool(getattr(base, "is_gradient_checkpointing", False))


def estimate_bytes(model_config: dict, tokens: int, element_bytes: int, checkpointing: bool) -> int:
    """Activation memory of one micro-batch of ``tokens`` packed tokens (a rough, Llama-shaped estimate)."""
    hidden = int(model_config.get("hidden_size") or 0)
    intermediate = int(model_config.get("intermediate_size") or 4 * hidden)
    layers = int(model_config.get("num_hidden_layers") or 0)
    per_layer = tokens * (_FULL_PER_HIDDEN * hidden + _FULL_PER_INTERMEDIATE * intermediate) * element_bytes
    logits = tokens * int(model_config.get("vocab_size") or 0) * _LOGIT_BYTES
    if not checkpointing:
        return layers * per_layer + logits
    # Each layer keeps its input; one layer at a time is recomputed with all of its activations.
    return layers * tokens * hidden * element_bytes + per_layer + logits


def longest_micro_batch(lengths: list[int], micro_batch_size: int) -> int:
    """Tokens in the largest packed micro-batch a run can meet (the longest examples together)."""
    return sum(sorted(lengths, reverse=True)[:micro_batch_size])


def advice(model_config: dict, tokens: int, element_bytes: int, checkpointing: bool, device, free_bytes: int | None = None) -> tuple[str, bool]:
    """``(message, warn)``: what the activations cost, and whether this run should change its setting.

    ``free_bytes`` is the accelerator's free memory after the model loaded (None on the CPU). On the
    CPU the message is empty below a quarter GiB: nothing there would want checkpointing.
    """
    full = estimate_bytes(model_config, tokens, element_bytes, checkpointing=False)
    saved = estimate_bytes(model_config, tokens, element_bytes, checkpointing=True)
    size = f"{tokens} tokens per micro-batch"
    if checkpointing:
        return (f"Gradient checkpointing on: activations about {saved / GIB:.2f} GiB instead of {full / GIB:.2f} GiB "
                f"({size}); each step recomputes the forward, about a third more compute."), False
    on_gpu = str(device).startswith("cuda")
    if on_gpu and free_bytes is not None:
        if full > 0.8 * free_bytes:
            return (f"one micro-batch's activations need about {full / GIB:.1f} GiB and {device} has {free_bytes / GIB:.1f} GiB free: "
                    f"pass --gradient-checkpointing (about {saved / GIB:.1f} GiB) or lower --micro-batch-size / --cutoff-len"), True
        return f"Gradient checkpointing off: activations about {full / GIB:.2f} GiB ({size}) fit in the {free_bytes / GIB:.1f} GiB free.", False
    if full < GIB / 4:
        return "", False
    return (f"Gradient checkpointing off (the default): activations about {full / GIB:.2f} GiB ({size}); a GPU run wants "
            f"--gradient-checkpointing when that does not fit beside the model (it would be about {saved / GIB:.2f} GiB)."), False


def free_accelerator_bytes(device) -> int | None:
    if not str(device).startswith("cuda"):
        return None
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def run_advice(lengths: list[int], micro_batch_size: int, model_config: dict, autocast_dtype, checkpointing: bool, device) -> tuple[str, bool]:
    """:func:`advice` for a run: its largest micro-batch, in its activation dtype, on its device."""
    tokens = longest_micro_batch(lengths, micro_batch_size)
    element_bytes = 4 if autocast_dtype is None else 2
    return advice(model_config, tokens, element_bytes, checkpointing, device, free_accelerator_bytes(device))
