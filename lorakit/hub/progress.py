"""Progress on stderr: a bar per file and one overall (rich, on a terminal), one line per file otherwise.

huggingface_hub reports bytes through a tqdm-like class passed as ``tqdm_class``; ``bar_class(path)``
returns such a class bound to one file, so the library's byte counts feed lorakit's rich bars.
"""

from __future__ import annotations

import threading

from lorakit.hub.retry import DownloadCancelled


def human_size(size: int | None) -> str:
    if size is None:
        return "? B"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


class DownloadBoard:
    def __init__(self, sizes: dict[str, int | None], console, live: bool | None = None):
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._sizes = dict(sizes)
        self._done: dict[str, int] = {path: 0 for path in sizes}
        self._tasks: dict[str, int] = {}
        self._progress = None
        self._overall = None

    def __enter__(self) -> "DownloadBoard":
        if self.live:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                console=self.console, transient=False,
            )
            self._progress.start()
            total = sum(size or 0 for size in self._sizes.values()) or None
            self._overall = self._progress.add_task(f"total ({len(self._sizes)} files)", total=total)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, message: str) -> None:
        """A line above the bars (or a plain line when there are none)."""
        (self._progress.console if self._progress else self.console).print(message, markup=False, highlight=False)

    def file_started(self, path: str, total: int | None, initial: int) -> None:
        with self._lock:
            self._done[path] = initial
            if total and not self._sizes.get(path):
                self._sizes[path] = total
            if self._progress is not None:
                if path in self._tasks:
                    self._progress.update(self._tasks[path], completed=initial, total=total)
                else:
                    self._tasks[path] = self._progress.add_task(path, total=total, completed=initial)
                self._refresh_overall()

    def advance(self, path: str, amount: int) -> None:
        if self.cancelled.is_set():
            raise DownloadCancelled()
        with self._lock:
            self._done[path] = max(0, self._done.get(path, 0) + amount)
            if self._progress is not None and path in self._tasks:
                self._progress.update(self._tasks[path], completed=self._done[path])
                self._refresh_overall()

    def file_done(self, path: str, size: int, cached: bool) -> None:
        with self._lock:
            self._done[path] = size
            if self._progress is not None:
                if path in self._tasks:  # finished files leave the bars and become a line above them
                    self._progress.remove_task(self._tasks.pop(path))
                self._refresh_overall()
        self.note(f"  {'in cache' if cached else 'fetched '}  {path} ({human_size(size)})")

    def _refresh_overall(self) -> None:
        self._progress.update(self._overall, completed=sum(self._done.values()))

    def bar_class(self, path: str) -> type:
        """A tqdm stand-in for ``hf_hub_download(tqdm_class=...)`` that reports bytes of ``path``."""
        board = self

        class FileBar:
            def __init__(self, *args, total=None, initial=0, **kwargs):
                self.n = initial
                self.total = total
                board.file_started(path, total, initial)

            def update(self, n=1):
                self.n += n
                board.advance(path, n)

            # Xet downloads report network bytes separately; the bar counts bytes written once, here.
            def update_transfer(self, n=1):
                pass

            def set_postfix_str(self, *args, **kwargs):
                pass

            set_transfer_postfix_str = set_description = set_postfix_str

            def refresh(self, *args, **kwargs):
                pass

            def close(self):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def __getattr__(self, name):
                # Tolerate tqdm methods a future huggingface_hub may call: they only affect display.
                if name.startswith("_"):
                    raise AttributeError(name)
                return lambda *args, **kwargs: None

        return FileBar
