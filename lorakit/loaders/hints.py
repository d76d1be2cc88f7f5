"""Hints that name the installed backends able to do what the chosen one cannot."""

from __future__ import annotations

from typing import Callable

from lorakit.loaders.capabilities import Capabilities
from lorakit.plugin.host import registered_loaders


def backends_that(test: Callable[[Capabilities], bool], what: str, pm=None) -> str:
    """A hint naming the installed, available backends whose capabilities pass ``test``."""
    able = [loader.name for loader in registered_loaders(pm).values() if test(loader.capabilities) and loader.availability().ok]
    if able:
        return f"loaders that can {what}: {', '.join(able)} (choose one with --loader)"
    return f"no installed loader can {what}"
