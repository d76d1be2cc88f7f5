"""The LoRA resolver lorakit installs into vLLM: ``loras/`` names and mixtures resolve there too.

Runs inside vLLM's interpreter (its own venv), loaded as a vLLM general plugin from the entry-point
group ``vllm.general_plugins`` (``lorakit = lorakit_vllm_resolver.resolver:register``), which the
engine makes visible through a small site folder on ``PYTHONPATH``. vLLM asks resolvers only for
names it does not know and only with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` set; a resolved name stays
loaded (vLLM's own LRU bounds the adapters in memory). Imports nothing of lorakit.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from . import mixtures

LORAS_ENV = "LORAKIT_VLLM_LORAS_DIR"
CACHE_ENV = "LORAKIT_VLLM_MIXTURE_CACHE"


class LorakitNames:
    """``name`` -> adapter folder: a folder under ``loras/``, or a mixture folded into the cache."""

    def __init__(self, loras_dir: Path, cache_dir: Path):
        self.loras_dir = Path(loras_dir)
        self.cache_dir = Path(cache_dir)

    def lookup(self, name: str) -> Path | None:
        """The folder serving ``name``, ``None`` when it names nothing (vLLM then answers 404)."""
        plain = mixtures.safe_folder(self.loras_dir, name)
        if plain is not None:
            return plain
        try:
            parts = mixtures.parse_mixture(name)
        except mixtures.MixtureError:
            return None
        folders = [mixtures.safe_folder(self.loras_dir, part.name) for part in parts]
        if any(folder is None for folder in folders):
            return None
        if mixtures.is_plain(parts):
            return folders[0]
        return mixtures.cached_fold([(folder, part.weight) for folder, part in zip(folders, parts)], self.cache_dir)


def register() -> None:
    """vLLM's general-plugin entry point: register the resolver when the engine configured one."""
    loras_dir = os.environ.get(LORAS_ENV)
    if not loras_dir:
        return
    from vllm.logger import init_logger
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

    logger = init_logger("lorakit_vllm_resolver")
    names = LorakitNames(Path(loras_dir), Path(os.environ.get(CACHE_ENV) or Path(loras_dir) / ".vllm-mixtures"))

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
