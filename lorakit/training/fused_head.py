"""The vocabulary projection and the cross-entropy in one pass, a chunk of positions at a time.

The stock path materialises ``[targets, vocab]`` logits in the autocast dtype, copies them to fp32,
takes a log-softmax, and in the backward fills a zero tensor of the same size, scatters into it,
runs the log-softmax backward and copies back: measured on SmolLM2 (vocabulary 49,152, about 650
targets per micro-batch, bf16, 1 CPU thread) those element-wise passes took about 0.75 s of a 6 s
step, next to 0.5 s for the projection's two matmuls themselves. Here each chunk's logits are made,
reduced to the loss and turned into ``softmax - one_hot`` at once, and the gradient with respect to
the hidden states (``dlogits @ W``) is computed in the forward, while the chunk is still in cache;
the backward only scales it. Peak memory drops by the size of the logits too.

Only where it is the same computation: the head is a plain, frozen ``nn.Linear`` (tied embeddings
included; a LoRA on ``lm_head`` or a trained head keeps the stock path) and the model has no logit
soft-capping or scaling.
"""

from __future__ import annotations

import contextlib
import functools

CHUNK = 256  # positions per chunk: 256 x 49,152 fp32 logits = 48 MiB
_SCALED_HEADS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale", "logit_softcapping")


def fusable_head(model):
    """The transformers model's ``lm_head`` when the fused loss equals the stock one, else ``None``."""
    import torch

    head = getattr(model, "lm_head", None)
    config = getattr(model, "config", None)
    if type(head) is not torch.nn.Linear or config is None:
        return None
    text_config = getattr(config, "get_text_config", lambda: config)()
    if any(getattr(cfg, name, None) not in (None, 0, 1, 1.0) for cfg in (config, text_config) for name in _SCALED_HEADS):
        return None
    if head.weight.requires_grad or (head.bias is not None and head.bias.requires_grad):
        return None
    return head


@contextlib.contextmanager
def head_input(head):
    """Capture ``(input, weight, bias)`` of ``head``'s call and feed it nothing (no logits are made).

    The weight is taken at call time: under ``--shard fsdp2`` that is the gathered tensor (the root
    module, which holds the head, stays gathered after its forward), not the shard.
    """
    captured = []

    def pre_hook(module, args):
        captured.append((args[0], module.weight, module.bias))
        return (args[0][..., :0, :],)

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield captured
    finally:
        handle.remove()


def linear_cross_entropy(hidden, weight, bias, targets, chunk: int = CHUNK):
    """``sum(cross_entropy(hidden @ weight.T + bias, targets))`` in fp32; ``hidden`` [N, H] gets a gradient."""
    import torch

    if torch.is_grad_enabled() and hidden.requires_grad:
        return _function().apply(hidden, weight, bias, targets, chunk)
    return _chunked_loss(hidden, weight, bias, targets, chunk, None)  # evaluation: no gradient to prepare


def _chunked_loss(hidden, weight, bias, targets, chunk: int, grad):
    """The summed loss; with ``grad`` ([N, H]) also fills it with d(loss)/d(hidden)."""
    import torch
    import torch.nn.functional as F

    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        # the head cast once, not by autocast at every chunk (an fp32 SmolLM2 head is 113 MB)
        dtype = torch.get_autocast_dtype(device_type)
        weight = weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start:start + chunk], targets[start:start + chunk]
        logits = F.linear(h, weight, bias).float()  # projected in the autocast dtype, the loss in fp32: the stock path's
        lse = torch.logsumexp(logits, dim=-1)
        total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
        if grad is not None:
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in the logits' own memory
            probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            grad[start:start + chunk] = probs.to(weight.dtype) @ weight
    return total


@functools.cache
def _function():
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, bias, targets, chunk):
            grad = torch.empty_like(hidden)
            total = _chunked_loss(hidden, weight, bias, targets, chunk, grad)
            ctx.save_for_backward(grad)
            return total

        @staticmethod
        def backward(ctx, grad_output):
            (grad,) = ctx.saved_tensors
            return grad * grad_output.to(grad.dtype), None, None, None, None

    return LinearCrossEntropy
