"""One rich console on stderr for progress, tables and warnings; stdout is kept for data."""

from __future__ import annotations

import functools
import sys


@functools.lru_cache(maxsize=1)
def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


@functools.lru_cache(maxsize=1)
def out_console():
    """A rich console on stdout, for results that are data (tables a user may redirect to a file)."""
    from rich.console import Console

    return Console(highlight=False)


def info(message: str) -> None:
    err_console().print(message, markup=False)


def warn(message: str) -> None:
    err_console().print(f"warning: {message}", style="yellow", markup=False)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
