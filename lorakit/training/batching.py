"""Batches for the training loop that never mask a real EOS and never train on padding.

SmolLM2 (and many chat models) use the same id for padding and for end-of-sequence. A collator
that builds labels by masking every position whose id equals ``pad_id`` (the classic
``labels[input_ids == pad_id] = -100``) silently removes the trained EOS, and the model never
learns to stop. Here padding is located by *length*: positions past an example's own length are
padding (``attention_mask`` 0, label -100); everything inside keeps the label the dataset gave it.

Two layouts:

- :func:`collate` pads to the longest example of the batch (right padding). Sort or bucket by
  length to keep padding small.
- :func:`pack` flattens the batch into one row with ``position_ids`` restarting at 0 for each
  example and no ``attention_mask``: transformers (>= 4.54) detects the restarts and builds a
  block-diagonal causal mask, so examples never attend to each other, with zero padding. The first
  label of every example is set to -100, so no token is trained to follow the previous example.
  Measured on transformers 5.23: the detection only happens when the forward gets no KV cache, and
  Llama builds one whenever ``use_cache`` is on (also in ``train()`` mode). Without
  ``use_cache=False`` the packed examples silently attend to each other. So both layouts return
  ``use_cache: False`` among the model inputs.

Both also return ``num_target_tokens`` (an int, not a model input: pop it before ``model(**batch)``):
how many positions contribute to the shifted causal-LM loss. Gradient accumulation must divide the
summed loss by the target tokens of the whole accumulated batch, not average per micro batch.
"""

from __future__ import annotations

from typing import Any, Sequence

from lorakit.training.masking import IGNORE_INDEX


def _fields(example: Any) -> tuple[list[int], list[int]]:
    if isinstance(example, dict):
        return list(example["input_ids"]), list(example["labels"])
    return list(example.input_ids), list(example.labels)


def count_target_tokens(labels_rows: Sequence[Sequence[int]]) -> int:
    """Positions that produce a loss term: labels after the causal shift that are not -100."""
    return sum(sum(1 for label in row[1:] if label != IGNORE_INDEX) for row in labels_rows)


def collate(examples: Sequence[Any], pad_id: int, pad_to_multiple_of: int | None = None) -> dict:
    """Right-padded tensors ``input_ids``, ``labels``, ``attention_mask`` (+ ``num_target_tokens``)."""
    import torch

    rows = [_fields(example) for example in examples]
    if not rows:
        raise ValueError("collate needs at least one example")
    longest = max(len(ids) for ids, _ in rows)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for index, (ids, row_labels) in enumerate(rows):
        if len(ids) != len(row_labels):
            raise ValueError(f"example {index} has {len(ids)} input ids but {len(row_labels)} labels")
        input_ids[index, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        labels[index, : len(ids)] = torch.tensor(row_labels, dtype=torch.long)
        attention_mask[index, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "use_cache": False,
        "num_target_tokens": count_target_tokens([row_labels for _, row_labels in rows]),
    }


def pack(examples: Sequence[Any]) -> dict:
    """One ``[1, total]`` row: ``input_ids``, ``labels``, ``position_ids`` (+ ``num_target_tokens``)."""
    import torch

    rows = [_fields(example) for example in examples]
    if not rows:
        raise ValueError("pack needs at least one example")
    ids_flat, labels_flat, positions = [], [], []
    for ids, row_labels in rows:
        if len(ids) != len(row_labels):
            raise ValueError(f"an example has {len(ids)} input ids but {len(row_labels)} labels")
        ids_flat += ids
        labels_flat += [IGNORE_INDEX] + row_labels[1:]  # never predicted from the previous example
        positions += range(len(ids))
    return {
        "input_ids": torch.tensor([ids_flat], dtype=torch.long),
        "labels": torch.tensor([labels_flat], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "use_cache": False,  # required: with a KV cache transformers skips the packed-sequence mask
        "num_target_tokens": count_target_tokens([row_labels for _, row_labels in rows]),
    }
