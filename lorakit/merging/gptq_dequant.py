"""Unpack GPTQ weights (``qweight``/``qzeros``/``scales``/``g_idx``) into 16-bit ``weight`` tensors, one layer at a time.

GPTQ v1 layout (``checkpoint_format`` "gptq", 2/4/8 bits): ``qweight`` int32 [K*bits/32, N] packs
32/bits values along the input dimension, low bits first; ``qzeros`` int32 [groups, N*bits/32] packs
zero points along the output dimension and stores ``zero - 1`` (v2, "gptq_v2", stores ``zero``);
``scales`` [groups, N]; ``g_idx`` int32 [K] maps each input row to its group. Then
``W[n, k] = scales[g, n] * (q[k, n] - zero[g, n])`` with ``g = g_idx[k]``.
"""

from __future__ import annotations

from lorakit.errors import LorakitError
from lorakit.merging.checkpoint import TensorSource

_PARTS = ("qweight", "qzeros", "scales", "g_idx")


def unpack_rows(packed, bits: int):
    """int32 [R, C] -> int [R * 32/bits, C]: values packed along dim 0, low bits first."""
    import torch

    per_word = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int32).view(1, per_word, 1)
    values = (packed.unsqueeze(1) >> shifts) & ((1 << bits) - 1)
    return values.reshape(packed.shape[0] * per_word, packed.shape[1])


def unpack_columns(packed, bits: int):
    """int32 [R, C] -> int [R, C * 32/bits]: values packed along dim 1, low bits first."""
    return unpack_rows(packed.T.contiguous(), bits).T


def dequantize_layer(qweight, qzeros, scales, g_idx, bits: int, v1: bool = True):
    """The fp32 weight [N, K] of one GPTQ layer."""
    import torch

    q = unpack_rows(qweight, bits).float()  # [K, N]
    zeros = unpack_columns(qzeros, bits).float() + (1.0 if v1 else 0.0)  # [groups, N]
    if g_idx is None:
        group = q.shape[0] // scales.shape[0]
        g_idx = torch.arange(q.shape[0]) // group
    g_idx = g_idx.long()
    weight = scales.float()[g_idx] * (q - zeros[g_idx])  # [K, N]
    return weight.T.contiguous()


class GptqDequantSource(TensorSource):
    """Wraps a GPTQ checkpoint: each layer's packed tensors appear as one ``<layer>.weight``."""

    fresh_reads = True

    def __init__(self, inner: TensorSource, quant: dict):
        self.inner = inner
        self.bits = int(quant.get("bits", 4))
        if self.bits not in (2, 4, 8):
            raise LorakitError(f"lorakit can dequantize 2-, 4- and 8-bit GPTQ, not {self.bits}-bit", "dequantize it with GPTQModel instead")
        fmt = str(quant.get("checkpoint_format", "gptq")).lower()
        if fmt not in ("gptq", "gptq_v2"):
            raise LorakitError(f"unknown GPTQ checkpoint_format '{fmt}'", "dequantize it with GPTQModel instead")
        self.v1 = fmt == "gptq"
        self._layers: dict[str, str] = {}  # "<layer>.weight" -> "<layer>"
        self._names: list[str] = []
        for name in inner.names():
            layer, _, part = name.rpartition(".")
            if part in _PARTS:
                if part == "qweight":
                    self._layers[f"{layer}.weight"] = layer
                    self._names.append(f"{layer}.weight")
                continue
            self._names.append(name)

    def names(self):
        return list(self._names)

    def _scales_dtype(self, layer: str) -> str:
        return self.inner.dtype(f"{layer}.scales")

    def dtype(self, name):
        return self._scales_dtype(self._layers[name]) if name in self._layers else self.inner.dtype(name)

    def shape(self, name):
        if name in self._layers:
            layer = self._layers[name]
            k = self.inner.shape(f"{layer}.qweight")[0] * 32 // self.bits
            return (self.inner.shape(f"{layer}.scales")[1], k)
        return self.inner.shape(name)

    def read(self, name):
        if name not in self._layers:
            return self.inner.read(name)
        layer = self._layers[name]
        g_idx = self.inner.read(f"{layer}.g_idx") if f"{layer}.g_idx" in self.inner else None
        # fp32: the merge adds the LoRA before the single rounding to the output dtype
        return dequantize_layer(
            self.inner.read(f"{layer}.qweight"), self.inner.read(f"{layer}.qzeros"), self.inner.read(f"{layer}.scales"), g_idx, self.bits, self.v1
        )

    def largest_file_bytes(self):
        return self.inner.largest_file_bytes()

    def __contains__(self, name):
        return name in self._layers or (name in self.inner and name.rpartition(".")[2] not in _PARTS)
