"""The LoRA resolver lorakit installs into vLLM: ``loras/`` names and mixtures resolve there too.

Runs inside vLLM's interpreter (its own venv), loaded as a vLLM general plugin from the entry-point
group ``vllm.general_plugins`` (``lorakit = lorakit_vllm_resolver.resolver:register``), which the
engine makes visible through a small site folder on ``PYTHONPATH``. vLLM asks resolvers only for
names it does not know and only with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` set; a resolved name stays
loaded (vLLM's own LRU bounds the adapters in memory). Imports nothing of lorakit.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from . import mixtures

LORAS_ENV = "LORAKIT_VLLM_LORAS_DIR"
CACHE_ENV = "LORAKIT_VLLM_MIXTURE_CACHE"
NAMED_ENV = "LORAKIT_VLLM_NAMED"  # JSON {name: [folder, default weight]}: the --lora adapters


class LorakitNames:
    """``name`` -> adapter folder: a ``--lora`` name, a folder under ``loras/``, or a mixture folded into the cache.

    A term without a weight takes its ``--lora`` default weight (1 for other ``loras/`` names), as in
    lorakit's own engine.
    """

    def __init__(self, loras_dir: Path | None, cache_dir: Path, named: dict | None = None):
        self.loras_dir = Path(loras_dir) if loras_dir else None
        self.cache_dir = Path(cache_dir)
        self.named = {name: (Path(folder), float(weight)) for name, (folder, weight) in (named or {}).items()}

    def _find(self, name: str) -> tuple[Path, float] | None:
        if name in self.named:
            return self.named[name]
        folder = self._in_loras(name)
        return None if folder is None else (folder, 1.0)

    def _in_loras(self, name: str) -> Path | None:
        return None if self.loras_dir is None else mixtures.safe_folder(self.loras_dir, name)

    def lookup(self, name: str) -> Path | None:
        """The folder serving ``name``, ``None`` when it names nothing (vLLM then answers 404)."""
        plain = None if name in self.named else self._in_loras(name)
        if plain is not None:
            return plain
        try:
            parts = mixtures.parse_mixture(name)
        except mixtures.MixtureError:
            return None
        found = [self._find(part.name) for part in parts]
        if any(item is None for item in found):
            return None
        sources = [(folder, default if part.weight is None else part.weight) for part, (folder, default) in zip(parts, found)]
        if len(sources) == 1 and sources[0][1] == 1.0:
            return sources[0][0]  # the adapter itself: nothing to fold
        return mixtures.cached_fold(sources, self.cache_dir)


def register() -> None:
    """vLLM's general-plugin entry point: register the resolver when the engine configured one."""
    loras_dir = os.environ.get(LORAS_ENV)
    if loras_dir is None:
        return
    from vllm.logger import init_logger
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

    logger = init_logger("lorakit_vllm_resolver")
    named = json.loads(os.environ.get(NAMED_ENV) or "{}")
    cache = os.environ.get(CACHE_ENV) or str(Path(loras_dir or ".") / ".vllm-mixtures")
    names = LorakitNames(Path(loras_dir) if loras_dir else None, Path(cache), named)

    class LorakitResolver(LoRAResolver):
        async def resolve_lora(self, base_model_name: str, lora_name: str):
            try:
                # Folding reads and writes weights: off the event loop.
                folder = await asyncio.to_thread(names.lookup, lora_name)
            except (mixtures.MixtureError, OSError, ValueError) as error:
                logger.warning("lorakit: cannot serve '%s': %s", lora_name, error)
                return None
            if folder is None:
                return None
            # vLLM replaces lora_int_id with its own counter after a resolver answers.
            return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=str(folder))

    LoRAResolverRegistry.register_resolver("lorakit", LorakitResolver())
