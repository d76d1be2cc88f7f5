"""A sharded base under ``torchrun``: ``--shard fsdp2`` (PyTorch FSDP2, ``fully_shard``).

What is sharded and what is not:

- The frozen base is sharded: every decoder layer (the model's ``_no_split_modules`` classes) is
  its own FSDP2 group and the rest (embeddings, final norm, output head) is the root group. Each
  rank keeps 1/N of every weight and all-gathers one layer at a time for its forward and backward,
  so a base that does not fit one device (or one host's memory) spreads over N.
- The LoRA weights and the optimizer state are *replicated*: they are passed to ``fully_shard`` as
  ``ignored_params``, so they stay plain tensors on every rank and the loop keeps its own gradient
  exchange (one ``all_reduce`` of the LoRA gradients per optimizer step, see
  training/distributed.py). A LoRA is well under 1 % of the base, so sharding it would save little
  and cost exactness: this way checkpoints, resume and the saved adapter are byte-for-byte the
  format of an unsharded run, and a sharded run resumes an unsharded one and back.

FSDP's collectives need every rank to run the same number of forward and backward passes, so
under sharding a rank with fewer micro-batches in a step (the last step of an epoch) or fewer
evaluation batches runs padding passes whose loss is multiplied by zero (:func:`passes`).

4-bit bases: bitsandbytes 4-bit weights are sharded only when stored in a float dtype
(``bnb_4bit_quant_storage``), which needs its CUDA kernels; on the CPU ``--shard fsdp2`` with
``--load-in-4bit`` is refused (:func:`check_shard`). 8-bit (int8 weights with separate scales)
cannot be sharded at all.
"""

from __future__ import annotations

import gc

from lorakit.errors import CapabilityError, LorakitError, UsageError

SHARD_MODES = ("none", "fsdp2")


def check_shard(mode: str, load_in_4bit: bool, load_in_8bit: bool, device: str) -> None:
    """Refuse the combinations that cannot shard, before anything loads."""
    if mode not in SHARD_MODES:
        raise UsageError(f"unknown --shard '{mode}'", "choose one of: " + ", ".join(SHARD_MODES))
    if mode == "none":
        return
    if load_in_8bit:
        raise CapabilityError(
            "--shard fsdp2 cannot shard an 8-bit base (bitsandbytes int8 weights keep their scales apart from the weight)",
            "use --load-in-4bit on a GPU, a bf16/fp32 base, or --shard none",
        )
    if load_in_4bit and not str(device).startswith("cuda"):
        raise CapabilityError(
            "--shard fsdp2 with --load-in-4bit needs a CUDA GPU: bitsandbytes shards 4-bit weights only as "
            "bf16 quant storage on its CUDA kernels, not on the CPU",
            "on the CPU shard a bf16/fp32 base, or train the 4-bit base with --shard none",
        )


def quant_storage_extra(mode: str, load_in_4bit: bool, compute_dtype: str) -> dict:
    """Loader extras for a sharded 4-bit base: FSDP splits float tensors, so bitsandbytes must pack
    its 4-bit values into the compute dtype instead of uint8 (the FSDP-QLoRA recipe)."""
    if mode == "none" or not load_in_4bit:
        return {}
    return {"bnb_4bit_quant_storage": "bf16" if compute_dtype in ("auto", "fp32") else compute_dtype}


def import_peft_probes_early() -> None:
    """Run PEFT's first import of GPTQModel (its quant-layer probe) outside any frame that holds a weight.

    That import, when it first happens inside ``get_peft_model``, leaves the importing frames alive
    (GPTQModel keeps them), and with them one base weight; transformers maps the whole safetensors
    file as one storage, so that one weight kept every original page resident after sharding
    (measured: +365 MB per rank on a 365 MB base). Imported here first, nothing is pinned.
    """
    import torch
    from peft.utils.other import is_gptqmodel_quant_linear

    is_gptqmodel_quant_linear(torch.nn.Linear(1, 1))


def is_sharded(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return False
    return isinstance(model, FSDPModule)


def shard_base(peft_model, ctx, mode: str, device: str) -> bool:
    """Shard the base of ``peft_model`` in place (LoRA weights replicated); False when nothing to do."""
    if mode == "none" or not ctx.enabled:
        return False
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    base = peft_model.get_base_model()
    layer_classes = set(getattr(base, "_no_split_modules", None) or ())
    layers = [module for module in base.modules() if type(module).__name__ in layer_classes]
    if not layers:
        raise LorakitError(
            f"--shard fsdp2 found no decoder layers to shard in {type(base).__name__} (it names no _no_split_modules)",
            "train this model with --shard none",
        )
    if str(device) == "cpu":
        return_freed_buffers_to_os()
    mesh = init_device_mesh(str(device).split(":")[0], (ctx.world_size,))
    lora = {param for param in peft_model.parameters() if param.requires_grad}
    for layer in layers:
        originals = [param.detach() for param in layer.parameters() if param not in lora]
        fully_shard(layer, mesh=mesh, ignored_params=lora & set(layer.parameters()))
        drop_file_pages(originals)
    originals = [param.detach() for param in peft_model.parameters() if param not in lora and not hasattr(param, "to_local")]
    fully_shard(peft_model, mesh=mesh, ignored_params=lora)
    drop_file_pages(originals)
    del originals
    gc.collect()  # the full weights each rank loaded are dropped here; only its shards remain
    return True


def reshard_everywhere(model) -> None:
    """Put every FSDP2 module of ``model`` back into shards, on every rank alike.

    The root module stays gathered after a forward that no backward follows (an evaluation), and
    ``state_dict()`` reshards it, but only where it is called: rank 0 saving a checkpoint would
    then gather the root again at the next forward while the other ranks would not (a collective
    mismatch). Called on all ranks after an evaluation.
    """
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def drop_file_pages(tensors) -> int:
    """Give back the resident pages of weights that are read straight from a memory-mapped file.

    transformers maps a safetensors file as one storage, so the pages of a layer's full weights stay
    resident until the last weight of the whole file is freed: sharding layer by layer would
    otherwise peak at the whole base plus this rank's shards. After a layer is sharded its full
    weights are no longer used; ``madvise(MADV_DONTNEED)`` drops their pages from this process
    (clean pages of a file mapping are re-read from the file if ever touched again, so this never
    changes a value). Only ranges inside file-backed mappings are touched. Returns bytes dropped;
    a no-op off Linux.
    """
    import ctypes
    import ctypes.util
    import mmap
    import os

    if not tensors or not os.path.exists("/proc/self/maps"):
        return 0
    mappings = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith("/") and fields[5].endswith(".safetensors"):
                start, end = (int(value, 16) for value in fields[0].split("-"))
                mappings.append((start, end))
    if not mappings:
        return 0
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    page, dropped = mmap.PAGESIZE, 0
    for tensor in tensors:
        begin = tensor.data_ptr()
        finish = begin + tensor.numel() * tensor.element_size()
        if not any(start <= begin and finish <= end for start, end in mappings):
            continue
        first, last = -(-begin // page) * page, finish // page * page  # whole pages inside the tensor only
        if last > first and libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4) == 0:  # 4 = MADV_DONTNEED
            dropped += last - first
    return dropped


def return_freed_buffers_to_os(threshold: int = 1 << 20) -> bool:
    """Make glibc serve allocations of ``threshold`` bytes or more with their own mmap.

    FSDP all-gathers a layer's weights, uses them and frees them again, for every layer and every
    pass. glibc raises its mmap threshold after such frees and then keeps the freed buffers in the
    heap, so on the CPU a sharded rank's resident memory grew by about the whole model (measured:
    a 365 MB base, 2 ranks: peak 1.73 GB per rank against 1.30 GB unsharded). A fixed threshold
    returns each buffer to the OS when it is freed. A no-op off glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc and libc.mallopt(-3, threshold))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def passes(batches: list, rank: int, world_size: int, sharded: bool) -> list[tuple[list, bool]]:
    """``(batch, counted)`` for this rank: its share of ``batches`` (every ``world_size``-th), padded
    under sharding to as many passes as the busiest rank with uncounted copies of the first batch."""
    mine = [(batch, True) for batch in batches[rank::world_size]]
    if sharded and batches:
        busiest = -(-len(batches) // world_size)
        mine += [(batches[0], False)] * (busiest - len(mine))
    return mine


def peak_memory_mb(device: str) -> dict:
    """This process's peak resident memory (and the GPU's peak allocation on CUDA), in MB."""
    import resource

    peak = {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux reports KiB
    if str(device).startswith("cuda"):
        import torch

        peak["gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def gather_peaks(ctx, device: str) -> list[dict]:
    """Every rank's :func:`peak_memory_mb`, on every rank (rank order)."""
    mine = peak_memory_mb(device)
    if not ctx.enabled:
        return [mine]
    import torch.distributed as dist

    everyone: list = [None] * ctx.world_size
    dist.all_gather_object(everyone, mine)
    return everyone
