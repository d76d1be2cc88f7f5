"""Which examples every optimizer step trains on, as a pure function of (seed, step, rank).

The data position of a run is therefore just its step number: a checkpoint that records the step
resumes on exactly the examples an uninterrupted run would have seen next, with no sampler state to
save. Each epoch is a seeded permutation of the examples; an optimizer step takes the next
``micro_batch_size * accumulation * world_size`` of them (the last step of an epoch may take
fewer), and micro-batch ``j`` of a step goes to rank ``j % world_size``. A run on N processes
therefore trains on the same examples per step as a run on one process with N times the
accumulation, and (with the loss normalised by the step's target tokens) makes the same update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TrainingPlan:
    num_examples: int
    micro_batch_size: int
    accumulation: int
    world_size: int
    epochs: float
    seed: int
    max_steps: int = 0  # when set, the run length instead of epochs (the data cycles through epochs)
    _orders: dict = field(default_factory=dict, repr=False)

    @property
    def examples_per_step(self) -> int:
        return self.micro_batch_size * self.accumulation * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.num_examples / self.examples_per_step))

    @property
    def total_steps(self) -> int:
        if self.max_steps > 0:
            return self.max_steps
        return max(1, math.ceil(round(self.epochs * self.steps_per_epoch, 6)))

    def epoch_of(self, step: int) -> float:
        """Fractional epoch reached after ``step`` optimizer steps (for logs and the progress bar)."""
        return step / self.steps_per_epoch

    def order(self, epoch: int) -> list[int]:
        """The shuffled example order of one epoch (seeded, identical on every rank)."""
        if epoch not in self._orders:
            import torch

            generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            self._orders = {epoch: torch.randperm(self.num_examples, generator=generator).tolist()}
        return self._orders[epoch]

    def step_examples(self, step: int) -> list[int]:
        """Indices of every example optimizer step ``step`` (0-based) trains on, all ranks together."""
        epoch, within = divmod(step, self.steps_per_epoch)
        start = within * self.examples_per_step
        return self.order(epoch)[start : start + self.examples_per_step]

    def all_micro_batches(self, step: int) -> list[list[int]]:
        """Every micro-batch of step ``step`` (all ranks), as lists of example indices."""
        indices = self.step_examples(step)
        return [indices[i : i + self.micro_batch_size] for i in range(0, len(indices), self.micro_batch_size)]

    def micro_batches(self, step: int, rank: int = 0) -> list[list[int]]:
        """This rank's micro-batches of step ``step``, as lists of example indices."""
        return self.all_micro_batches(step)[rank :: self.world_size]
