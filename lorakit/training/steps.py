"""One micro-batch forward, the summed loss, and the gradient exchange between ranks.

Speed without padding waste: the examples of a micro-batch are packed into one row
(:func:`lorakit.training.batching.pack`) with ``position_ids`` restarting at 0 for each example, so
transformers builds a block-diagonal causal mask and no example attends to another (tested against
separate forwards in tests/train/test_packing.py). Logits are computed only at positions that have
a target (``logits_to_keep``), which skips the vocabulary projection for masked prompt tokens, and
where the head allows it the projection and the loss run fused, chunk by chunk
(:mod:`lorakit.training.fused_head`).

The loss of a step is the sum of token losses divided by the number of target tokens of the whole
step (all micro-batches, all ranks), so micro-batch size, accumulation and process count do not
change what is optimised.
"""

from __future__ import annotations

import contextlib
import inspect
import math

from lorakit.training.batching import pack
from lorakit.training.fused_head import fusable_head, head_input, linear_cross_entropy
from lorakit.training.masking import IGNORE_INDEX
from lorakit.training.packed_attention import SEGMENTS_KWARG, segments_of
from lorakit.training.sharding import passes, reshard_everywhere


class PackedLoss:
    def __init__(self, peft_model, device, autocast_dtype, per_example_attention: bool = False):
        self.model = peft_model
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.per_example_attention = per_example_attention  # see training/packed_attention.py
        base = peft_model.get_base_model()
        self.keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters
        self.fused_head = fusable_head(base) if self.keeps_logits else None  # see training/fused_head.py

    def autocast(self):
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        device_type = str(self.device).split(":")[0]
        return torch.autocast(device_type=device_type, dtype=self.autocast_dtype)

    def __call__(self, examples):
        """``(summed token loss, target tokens)`` of one packed micro-batch."""
        import torch.nn.functional as F

        batch = pack(examples)
        labels = batch["labels"][0]
        targets = labels[1:]
        positions = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        inputs = {
            "input_ids": batch["input_ids"].to(self.device),
            "position_ids": batch["position_ids"].to(self.device),
            "use_cache": False,  # required: with a cache transformers skips the packed-sequence mask
        }
        wanted = targets[positions].to(self.device)
        if self.per_example_attention:
            inputs[SEGMENTS_KWARG] = segments_of(len(example.input_ids) for example in examples)
        elif len(examples) == 1:
            inputs.pop("position_ids")  # one example: plain causal attention, the fastest kernel
        head = self.fused_head
        with self.autocast():
            if head is not None:
                with head_input(head) as captured:
                    out = self.model(**inputs, logits_to_keep=positions.to(self.device))
                hidden, weight, bias = captured[0]
                loss_sum = linear_cross_entropy(hidden[0], weight, bias, wanted)
                if out.logits.requires_grad:  # the model's own (empty) output stays in the graph: FSDP2 hooks its backward there
                    loss_sum = loss_sum + out.logits.sum()
                return loss_sum, int(positions.numel())
            if self.keeps_logits:
                logits = self.model(**inputs, logits_to_keep=positions.to(self.device)).logits[0]
            else:
                logits = self.model(**inputs).logits[0][positions.to(self.device)]
        loss_sum = F.cross_entropy(logits.float(), wanted, reduction="sum")
        return loss_sum, int(positions.numel())


def trainable_parameters(model) -> list:
    return [param for param in model.parameters() if param.requires_grad]


def exchange(ctx, parameters, loss_sum: float, stop: bool) -> tuple[float, bool]:
    """Sum gradients and the loss over all ranks in one all_reduce; returns (loss_sum, any rank stopping).

    A rank that had no micro-batch in this step contributes zeros.
    """
    if not ctx.enabled:
        return loss_sum, stop
    import torch

    from lorakit.training.distributed import all_reduce_sum

    grads = [param.grad if param.grad is not None else torch.zeros_like(param) for param in parameters]
    flat = torch.cat([grad.reshape(-1).float() for grad in grads] + [torch.tensor([loss_sum, 1.0 if stop else 0.0], device=grads[0].device)])
    all_reduce_sum(ctx, flat)
    offset = 0
    for param, grad in zip(parameters, grads):
        size = grad.numel()
        param.grad = flat[offset : offset + size].view_as(param).to(param.dtype).clone()
        offset += size
    return float(flat[-2].item()), bool(flat[-1].item() > 0)


def evaluate(loss_fn: PackedLoss, examples, micro_batch_size: int, ctx, sharded: bool = False) -> float:
    """Token-mean loss over an evaluation set (ranks split the micro-batches)."""
    import torch

    from lorakit.training.distributed import all_reduce_sum

    model = loss_fn.model
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    batches = [examples[i : i + micro_batch_size] for i in range(0, len(examples), micro_batch_size)]
    with torch.no_grad():
        for batch, counted in passes(batches, ctx.rank, ctx.world_size, sharded):
            loss_sum, targets = loss_fn(batch)
            if counted:  # uncounted padding passes keep FSDP's collectives in step across ranks
                total += float(loss_sum)
                count += targets
    if sharded:
        reshard_everywhere(model)
    sums = torch.tensor([total, float(count)], dtype=torch.float64)
    sums = sums.to(ctx.device)
    all_reduce_sum(ctx, sums)
    sums = sums.cpu()
    if was_training:
        model.train()
    return float(sums[0] / sums[1]) if sums[1] > 0 else math.nan
