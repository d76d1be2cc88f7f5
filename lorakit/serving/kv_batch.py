"""The running batch's KV cache: rows join and leave at token boundaries, left-padded to one length.

Newcomers are prefilled together, left-padded to their longest prompt; joining the batch pads
either the batch or the newcomers on the left so every row ends at the same column, and the 2-D
attention mask marks the padding. Positions are per row (a row's real token count), so rotary
embeddings see exactly what a solo run sees. A finished row is dropped with one ``index_select``
and columns that are padding for every remaining row are trimmed off the front.
"""

from __future__ import annotations


def _layers(cache):
    return getattr(cache, "layers", None) or []


def plain_dynamic_cache(cache) -> bool:
    """Only full-attention ``DynamicLayer`` caches can be padded and joined (not sliding windows)."""
    return all(type(layer).__name__ == "DynamicLayer" for layer in _layers(cache))


def zero_padding(cache, pads: list[int]) -> None:
    """Zero the left-padding columns of a cache prefilled with padded rows (row i has ``pads[i]``)."""
    for layer in _layers(cache):
        for row, pad in enumerate(pads):
            if pad:
                layer.keys[row, :, :pad] = 0
                layer.values[row, :, :pad] = 0


def _pad_left(tensor, columns: int, dim: int):
    import torch

    if columns <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class KVBatch:
    """A DynamicCache holding B rows plus the [B, T] attention mask that says which columns are real."""

    def __init__(self):
        self.cache = None
        self.mask = None  # long [B, T]

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def add(self, cache, mask) -> None:
        """Append rows prefilled together: ``mask`` [n, L] marks their real columns (all end at column L)."""
        import torch

        if self.cache is None:
            self.cache, self.mask = cache, mask
            return
        grow = mask.shape[1] - self.length
        for mine, theirs in zip(_layers(self.cache), _layers(cache)):
            mine.keys = torch.cat([_pad_left(mine.keys, grow, 2), _pad_left(theirs.keys, -grow, 2)], dim=0)
            mine.values = torch.cat([_pad_left(mine.values, grow, 2), _pad_left(theirs.values, -grow, 2)], dim=0)
        self.mask = torch.cat([_pad_left(self.mask, grow, 1), _pad_left(mask, -grow, 1)], dim=0)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order), then trim columns that are padding for all of them."""
        import torch

        if not rows:
            self.cache = self.mask = None
            return
        if rows == list(range(self.rows)):
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        self.mask = self.mask.index_select(0, index)
        real = self.mask.any(dim=0).nonzero()
        start = int(real[0]) if len(real) else 0
        self.mask = self.mask[:, start:]
        for layer in _layers(self.cache):
            layer.keys = layer.keys.index_select(0, index.to(layer.keys.device))[:, :, start:]
            layer.values = layer.values.index_select(0, index.to(layer.values.device))[:, :, start:]

    def step_mask(self):
        """The mask for one more token per row (the column being computed is real for everyone)."""
        import torch

        self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
        return self.mask
