"""The progress bar on stderr (step, epoch, loss, learning rate, tokens/s, ETA) and the training log.

Only rank 0 shows progress. When stderr is not a terminal (CI logs, pipes) a plain line is printed
every few steps instead of a live bar, so logs still show the run advancing.
"""

from __future__ import annotations

import math
import time


class TrainingProgress:
    def __init__(self, total_steps: int, start_step: int, enabled: bool = True):
        self.total = total_steps
        self.start_step = start_step
        self.enabled = enabled
        self._progress = None
        self._task = None
        self._plain_every = max(1, total_steps // 20)
        self._console = None

    def __enter__(self):
        if not self.enabled:
            return self
        from lorakit.output.console import err_console

        self._console = err_console()
        if self._console.is_terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("epoch {task.fields[epoch]:.2f}  loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[tps]} tok/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.total, completed=self.start_step, epoch=0.0, loss="-", lr="-", tps="-")
        return self

    def update(self, step: int, epoch: float, loss: float, lr: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        fields = dict(epoch=epoch, loss=_fmt_loss(loss), lr=f"{lr:.2e}", tps=f"{tokens_per_s:,.0f}")
        if self._progress is not None:
            self._progress.update(self._task, completed=step, **fields)
        elif step == self.total or step % self._plain_every == 0 or step == self.start_step + 1:
            self._console.print(
                f"step {step}/{self.total}  epoch {epoch:.2f}  loss {fields['loss']}  lr {fields['lr']}  {fields['tps']} tok/s",
                markup=False, highlight=False,
            )

    def note(self, message: str) -> None:
        if self.enabled and self._console is not None:
            self._console.print(message, markup=False, highlight=False)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


def _fmt_loss(loss: float) -> str:
    return f"{loss:.4f}" if math.isfinite(loss) else str(loss)


class TokenRate:
    """Tokens per second of the last step and of the whole run (excluding checkpoint and eval time)."""

    def __init__(self):
        self.tokens = 0
        self.seconds = 0.0
        self._started = None

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self, tokens: int) -> float:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self.tokens += tokens
        self.seconds += elapsed
        return tokens / elapsed

    @property
    def overall(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0
