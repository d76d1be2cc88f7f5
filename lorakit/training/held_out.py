"""The evaluation side of a run: a seeded validation split, the best evaluation so far, early stopping.

``--val-set-size N|FRACTION`` holds out examples of the training data (alpaca-lora's
``val_set_size``): N examples, or that fraction of them (rounded, at least one), chosen by a
permutation seeded with ``--seed``, so a resumed run, or a rerun, holds out exactly the same ones.

The best evaluation and the count of evaluations without improvement are read back from the
training log, which every checkpoint carries: a resumed run decides early stopping and the best
checkpoint exactly as the uninterrupted run did, with no extra state to save.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lorakit.errors import UsageError

SPLIT_SEED_OFFSET = 7919  # the split's generator differs from the epoch orders' (seed * 1000 + epoch)


def held_out_count(size: float, examples: int) -> int:
    if not size:
        return 0
    return int(size) if size >= 1 else max(1, round(examples * size))


def split(examples: list, size: float, seed: int) -> tuple[list, list]:
    """``(train, held out)``, each in the data's original order."""
    count = held_out_count(size, len(examples))
    if count == 0:
        return examples, []
    if count >= len(examples):
        raise UsageError(
            f"--val-set-size {size:g} holds out {count} of the {len(examples)} examples, leaving none to train on",
            "lower --val-set-size (a fraction such as 0.1 scales with the data)",
        )
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + SPLIT_SEED_OFFSET)
    order = torch.randperm(len(examples), generator=generator).tolist()
    chosen = set(order[:count])
    return ([example for index, example in enumerate(examples) if index not in chosen],
            [example for index, example in enumerate(examples) if index in chosen])


@dataclass
class EvalHistory:
    """The lowest evaluation loss so far, its step, and evaluations since it (a later equal loss is no improvement)."""

    best_loss: float | None = None
    best_step: int | None = None
    since_best: int = 0

    @classmethod
    def from_log(cls, log: list[dict]) -> EvalHistory:
        history = cls()
        for entry in log:
            if "eval_loss" in entry:
                history.add(int(entry["step"]), float(entry["eval_loss"]))
        return history

    def add(self, step: int, loss: float) -> bool:
        """Record an evaluation; True when it is the new best."""
        if math.isfinite(loss) and (self.best_loss is None or loss < self.best_loss):
            self.best_loss, self.best_step, self.since_best = loss, step, 0
            return True
        self.since_best += 1
        return False

    def should_stop(self, patience: int) -> bool:
        return patience > 0 and self.since_best >= patience
