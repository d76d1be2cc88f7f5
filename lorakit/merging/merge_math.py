"""Apply a tensor's planned LoRA updates in fp32: ``W + sum_i w_i * scaling_i * B_i @ A_i``.

Plain LoRA updates are added in row blocks, so the full ``B @ A`` product never exists next to the
weight: peak memory for a tensor is the tensor in fp32 plus one block.

The rounding follows PEFT's ``merge``: the product ``B @ A`` is scaled (one fp32 rounding), then
added to the weight (a second rounding), so an fp32 merge is bit-identical to ``merge_and_unload``
for any scaling. A fused ``W + s * BA`` (``add_(alpha=s)``, ``addmm``) rounds once and differs in
the last bit whenever ``s`` is not a power of two.
"""

from __future__ import annotations

from lorakit.errors import LorakitError
from lorakit.merging.plan import OutTensor, Update
from lorakit.store.adapter_checks import all_finite

_BLOCK_ELEMENTS = 1 << 22  # 4M fp32 values (16 MB) per block


def _add_lora(weight, update: Update, device) -> None:
    record = update.module
    A = record.A.to(device=device, dtype=weight.dtype)
    B = record.B.to(device=device, dtype=weight.dtype)
    factor = update.lora.weight * record.scaling
    transposed = record.kind == "embedding" or record.fan_in_fan_out  # weight is [in, out]
    rows = weight.shape[0]
    step = max(1, _BLOCK_ELEMENTS // max(1, weight.shape[1]))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        block = (B @ A[:, start:stop]).T if transposed else B[start:stop] @ A
        weight[start:stop].add_(block.mul_(factor))


def _apply_dora(weight, original, update: Update, device):
    """PEFT's DoRA merge: ``m / ||W0 + dW||_row * (W + dW)``, the norm taken on the unmerged base (PEFT >= 0.21)."""
    record = update.module
    delta = record.delta(update.lora.weight).to(device)  # in the layout of the weight
    lora_layout = (lambda t: t.T) if record.fan_in_fan_out else (lambda t: t)
    norm = (lora_layout(original) + lora_layout(delta)).norm(p=2, dim=1)
    factor = record.magnitude.to(device=device, dtype=weight.dtype) / norm
    factor = factor.view(1, -1) if record.fan_in_fan_out else factor.view(-1, 1)
    return factor * (weight + delta)


def merge_tensor(tensor: OutTensor, base, device: str = "cpu", owned: bool = False):
    """The merged tensor in fp32 on ``device``; raises when the result holds NaN or Inf.

    ``owned`` says ``base`` is a fresh buffer that may be updated in place (else it is copied first).
    """
    import torch

    weight = base.to(device=device, dtype=torch.float32)
    if not owned and weight.data_ptr() == base.data_ptr():
        weight = weight.clone()
    original = weight.clone() if any(update.kind == "dora" for update in tensor.updates) else None
    for update in tensor.updates:
        if update.kind == "replace":
            weight = update.tensor.to(device=device, dtype=weight.dtype).clone()
            if original is not None:
                original = weight.clone()
        elif update.kind == "lora":
            _add_lora(weight, update, device)
        elif update.kind == "dora":
            weight = _apply_dora(weight, original, update, device)
        elif update.kind == "bias":
            record = update.module
            weight.add_(record.bias.to(device=device, dtype=weight.dtype) * (update.lora.weight * record.scaling))
    if tensor.updates and not all_finite(weight):
        raise LorakitError(
            f"merging produced NaN or Inf in {tensor.name}; nothing was written",
            "check the adapters' weights (a diverged training run?) and the merge weights",
        )
    return weight
