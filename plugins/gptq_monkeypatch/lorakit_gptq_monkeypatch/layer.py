"""A pure-PyTorch GPTQ linear layer: packed weights, dequantized on the fly, with a real backward.

Storage is the standard GPTQ v1 packing (what AutoGPTQ, GPTQModel and transformers/optimum save):

- ``qweight`` int32 ``[K / (32/bits), N]``: ``32/bits`` codes along the input dimension, low bits first;
- ``qzeros`` int32 ``[G, N / (32/bits)]``: zero points along the output dimension, stored as ``zero - 1``
  in the v1 format (``zero_offset = 1``) and as ``zero`` in v2;
- ``scales`` ``[G, N]`` and ``g_idx`` int32 ``[K]`` (the group of each input column; with act-order
  it is not ``k // group_size``).

``W[n, k] = scales[g_idx[k], n] * (q[k, n] - (qzeros[g_idx[k], n] + zero_offset))``.

The layer subclasses :class:`torch.nn.Linear` only so that PEFT (and every tool that looks for
linear layers) attaches LoRAs to it with its ordinary code; it holds no weight parameter. The
autograd function keeps just the packed buffers for backward and dequantizes again there, so
training costs no full-precision weight copy per layer; inputs get gradients, the frozen
quantized weights never do.
"""

from __future__ import annotations

import math
import os

import torch

SUPPORTED_BITS = (2, 4, 8)
CACHE_ENV = "LORAKIT_GPTQ_CACHE"
"""``LORAKIT_GPTQ_CACHE=1``: keep each layer's dequantized weight for no-grad passes (generation runs
at full-precision speed, at full-precision memory). Off by default: 4-bit memory is the point."""


def unpack_codes(packed: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Unpack int32 words into ``32/bits`` codes each, along ``dim`` (0: rows, 1: columns), low bits first."""
    per_word = 32 // bits
    shifts = torch.arange(0, 32, bits, device=packed.device, dtype=torch.int32)
    mask = (1 << bits) - 1
    if dim == 0:
        codes = torch.bitwise_right_shift(packed.unsqueeze(1), shifts.view(1, per_word, 1)) & mask
        return codes.reshape(packed.shape[0] * per_word, packed.shape[1])
    codes = torch.bitwise_right_shift(packed.unsqueeze(2), shifts.view(1, 1, per_word)) & mask
    return codes.reshape(packed.shape[0], packed.shape[1] * per_word)


def dequantize(qweight, qzeros, scales, g_idx, bits: int, zero_offset: int, in_features: int, out_features: int,
               dtype: torch.dtype, group_size: int | None = None) -> torch.Tensor:
    """The full weight as ``[in_features, out_features]`` (``x @ W`` is the layer's output).

    ``group_size`` set means ``g_idx`` is the plain ``k // group_size`` (no act-order): the groups are
    contiguous blocks and a broadcast replaces the two gathers.
    """
    codes = unpack_codes(qweight, bits, 0)[:in_features]
    zeros = unpack_codes(qzeros, bits, 1)[:, :out_features] + zero_offset
    scales = scales.to(dtype)
    if group_size is not None:
        groups = in_features // group_size
        centred = codes.view(groups, group_size, out_features) - zeros.unsqueeze(1)
        return (centred.to(dtype) * scales.unsqueeze(1)).view(in_features, out_features)
    index = g_idx.long()
    return (codes - zeros[index]).to(dtype) * scales[index]


class _DequantMatmul(torch.autograd.Function):
    """``x @ W`` with W rebuilt from the packed buffers in forward and again in backward."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        weight = layer.dequantized(x.dtype)
        return x @ weight

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[0]:
            return None, None
        weight = ctx.layer.dequantized(grad_out.dtype)
        return grad_out @ weight.t(), None


class GPTQLinear(torch.nn.Linear):
    """A GPTQ-quantized linear layer that PEFT treats as an ordinary ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, bits: int = 4, group_size: int = 128,
                 zero_offset: int = 1, dtype: torch.dtype = torch.float32, device=None):
        torch.nn.Module.__init__(self)  # not nn.Linear.__init__: there is no full-precision weight to allocate
        if bits not in SUPPORTED_BITS:
            raise ValueError(f"GPTQLinear supports {SUPPORTED_BITS}-bit weights, not {bits}-bit")
        per_word = 32 // bits
        if in_features % per_word:
            raise ValueError(f"in_features {in_features} is not a multiple of {per_word} ({bits}-bit packing)")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.zero_offset = bits, zero_offset
        self.group_size = in_features if group_size in (-1, 0, None) else group_size
        groups = math.ceil(in_features / self.group_size)
        self.register_buffer("qweight", torch.zeros(in_features // per_word, out_features, dtype=torch.int32, device=device))
        self.register_buffer("qzeros", torch.zeros(groups, math.ceil(out_features / per_word), dtype=torch.int32, device=device))
        self.register_buffer("scales", torch.zeros(groups, out_features, dtype=dtype, device=device))
        self.register_buffer("g_idx", torch.arange(in_features, dtype=torch.int32, device=device) // self.group_size)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)
        self._contiguous_groups: bool | None = None
        self.cache_weights = os.environ.get(CACHE_ENV, "") not in ("", "0")
        self._cache: dict = {}

    # ---- weights ----------------------------------------------------------------------------
    def _groups_are_contiguous(self) -> bool:
        # Decided once per g_idx: act-order checkpoints need the gather path, the others the fast one.
        if self._contiguous_groups is None:
            plain = torch.arange(self.in_features, device=self.g_idx.device, dtype=torch.int32) // self.group_size
            self._contiguous_groups = bool(self.in_features % self.group_size == 0 and torch.equal(self.g_idx, plain))
        return self._contiguous_groups

    def _load_from_state_dict(self, *args, **kwargs):
        self._contiguous_groups = None  # a new g_idx may arrive
        self._cache = {}
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._cache = {}  # moved or cast: cached weights are stale
        return super()._apply(fn, *args, **kwargs)

    def dequantized(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight as ``[in_features, out_features]``, computed from the packed buffers."""
        return dequantize(
            self.qweight, self.qzeros, self.scales, self.g_idx, self.bits, self.zero_offset, self.in_features,
            self.out_features, dtype or self.scales.dtype, self.group_size if self._groups_are_contiguous() else None,
        )

    @property
    def weight(self) -> torch.Tensor:
        """A dequantized, read-only copy in ``nn.Linear`` layout ``[out, in]`` (writing to it changes nothing)."""
        with torch.no_grad():
            return self.dequantized().t()

    # ---- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device_type = x.device.type
        dtype = x.dtype
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            if self.cache_weights and not torch.is_grad_enabled():
                key = (dtype, x.device)
                if key not in self._cache:
                    self._cache[key] = self.dequantized(dtype)
                out = x.to(dtype) @ self._cache[key]
            else:
                out = _DequantMatmul.apply(x.to(dtype), self)
            if self.bias is not None:
                out = out + self.bias.to(dtype)
        return out

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"bits={self.bits}, group_size={self.group_size}")
