"""The progress line on stderr (step, bar, epoch, loss, learning rate, tokens/s, elapsed, ETA) and the
tokens-per-second meter.

Only rank 0 shows progress. The line is designed for an 80-column terminal: one line, never cut,
the bar taking what room is left; on a narrower terminal the least useful fields go first (epoch,
then the learning rate, then the elapsed time). The ETA is this run's mean step time times the
steps left, so it is known from the first step on (rich's own estimate needs a long sampling window).
When stderr is not a terminal (CI logs, pipes) the same line without the bar is printed every few
steps instead of a live bar, so logs still show the run advancing.
"""

from __future__ import annotations

import math
import time

BAR_MIN, BAR_MAX = 10, 30
# Dropped in this order when the line would not fit.
_OPTIONAL = ("epoch", "lr", "elapsed")


def clock(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; ``-:--`` while unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--"
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_line(step: int, total: int, fields: dict, width: int, bar: bool) -> str:
    """The progress line for ``width`` columns (always under it: a terminal wraps a full-width line).

    ``fields``: epoch, loss, lr, tps (texts) and elapsed, eta (seconds or None).
    """
    parts = {
        "epoch": f"epoch {fields['epoch']:.2f}",
        "loss": f"loss {fields['loss']}",
        "lr": f"lr {fields['lr']}",
        "tps": f"{fields['tps']} tok/s",
        "elapsed": clock(fields.get("elapsed")),
        "eta": f"ETA {clock(fields.get('eta'))}",
    }
    head = f"step {step}/{total}"
    room = width - 1
    order = ["epoch", "loss", "lr", "tps", "elapsed", "eta"]
    for drop in (None, *_OPTIONAL):
        if drop is not None:
            order.remove(drop)
        tail = " ".join(parts[key] for key in order)
        if len(head) + 1 + len(tail) <= room:
            break
    line_room = room - len(head) - len(tail) - 2
    if bar and line_room >= BAR_MIN:
        size = min(BAR_MAX, line_room)
        done = round(size * step / total) if total else size
        return f"{head} {'━' * done}{'╺' if done < size else ''}{'─' * max(size - done - 1, 0)} {tail}"
    return f"{head} {tail}"


class TrainingProgress:
    def __init__(self, total_steps: int, start_step: int, enabled: bool = True, console=None):
        self.total = total_steps
        self.start_step = start_step
        self.enabled = enabled
        self._live = None
        self._plain_every = max(1, total_steps // 20)
        self._console = console
        self._started = time.perf_counter()
        self._fields = {"epoch": 0.0, "loss": "-", "lr": "-", "tps": "-", "elapsed": 0.0, "eta": None}
        self._step = start_step

    def __enter__(self):
        if not self.enabled:
            return self
        if self._console is None:
            from lorakit.output.console import err_console

            self._console = err_console()
        self._started = time.perf_counter()
        if self._console.is_terminal:
            from rich.live import Live

            self._live = Live(self._render(), console=self._console, auto_refresh=True, refresh_per_second=2, transient=False, get_renderable=self._render)
            self._live.__enter__()
        return self

    def _render(self):
        from rich.text import Text

        self._fields["elapsed"] = time.perf_counter() - self._started
        return Text(status_line(self._step, self.total, self._fields, self._console.width, bar=True), no_wrap=True, overflow="crop")

    def update(self, step: int, epoch: float, loss: float, lr: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self._started
        done = step - self.start_step
        eta = elapsed / done * (self.total - step) if done > 0 else None
        self._step = step
        self._fields.update(epoch=epoch, loss=_fmt_loss(loss), lr=f"{lr:.1e}", tps=f"{tokens_per_s:,.0f}", elapsed=elapsed, eta=eta)
        if self._live is not None:
            self._live.refresh()
        elif step == self.total or step % self._plain_every == 0 or step == self.start_step + 1:
            self._console.print(status_line(step, self.total, self._fields, 80, bar=False), markup=False, highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        if self.enabled and self._console is not None:
            self._console.print(message, markup=False, highlight=False)

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)
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
