"""Data parallelism under ``torchrun --nproc_per_node=N`` with no code change (gloo on CPU, NCCL on GPU).

Why not wrap the model in ``DistributedDataParallel``: DDP averages gradients on every backward,
which gives the wrong weighting when ranks hold different numbers of target tokens, and needs
``no_sync`` juggling for accumulation. The LoRA gradients are a few megabytes, so the loop sums the
loss-token-normalised gradients of all ranks with one ``all_reduce`` per optimizer step instead:
every rank then applies the same update and the weights stay identical, exactly as a single
process training on the whole batch would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"  # where collective tensors live (NCCL needs them on the GPU)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun set up (a no-op for a single process)."""
    if not launched_by_torchrun():
        return DistContext()
    import torch
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    tensor_device = f"cuda:{local_rank}" if device == "cuda" else "cpu"
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, tensor_device)


def device_for(ctx: DistContext, device: str) -> str:
    """Each rank uses its own GPU."""
    return f"cuda:{ctx.local_rank}" if device == "cuda" and ctx.enabled else device


def all_reduce_sum(ctx: DistContext, tensor) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def broadcast_flag(ctx: DistContext, value: bool) -> bool:
    """Rank 0's answer on every rank (for decisions only rank 0 can make, like "the save failed")."""
    if not ctx.enabled:
        return value
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if value else 0], device=ctx.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
