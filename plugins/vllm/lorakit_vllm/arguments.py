"""A :class:`lorakit.api.ServeRequest` as vLLM's OpenAI server command line and environment.

What maps (lorakit -> vLLM): MODEL -> ``--model`` (served under lorakit's model id,
``--served-model-name``); ``--lora NAME[:W]`` -> ``--lora-modules NAME=FOLDER`` (a weight other than 1
is folded into a cached copy scaled by W); every ``loras/`` name and mixture -> the lorakit resolver
(vLLM general plugin, runtime LoRA updating on); ``--host``/``--port`` -> the same; ``--api-key`` ->
``VLLM_API_KEY`` (the environment, so the key is not in the process list); ``--max-batch`` ->
``--max-num-seqs``; ``--max-loaded-loras`` -> ``--max-cpu-loras`` (vLLM's LRU of loaded adapters) and
``--max-loras`` (adapters in one batch, at most the batch); ``--dtype`` -> ``--dtype``
(``auto`` lets vLLM choose: bf16 on CPU). ``--max-queue`` and ``--max-tokens-limit`` have no vLLM flag
(vLLM queues without bound and caps tokens at the model length).
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.api import CapabilityError, UsageError

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts
MIX_PARTS = 4  # --max-lora-rank leaves room for mixtures of this many of the largest adapters
DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
EXTRA_ARGS_ENV = "LORAKIT_VLLM_ARGS"
RANK_ENV = "LORAKIT_VLLM_MAX_LORA_RANK"
PLUGIN_NAME = "lorakit"  # our entry point in vllm.general_plugins, the only one VLLM_PLUGINS allows


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    lora_modules: dict[str, Path] = field(default_factory=dict)


def vllm_dtype(options) -> str:
    name = getattr(options, "dtype", None) or "auto"
    if name not in DTYPES:
        raise UsageError(f"unknown --dtype '{name}' for vLLM", "use one of: " + ", ".join(DTYPES))
    return DTYPES[name]


def refuse_unsupported(request) -> None:
    options = request.load_options
    quantization = options.quantization() if options is not None and hasattr(options, "quantization") else None
    if quantization:
        raise CapabilityError(
            f"--engine vllm cannot load the base with {quantization} (bitsandbytes on the fly)",
            "serve a checkpoint vLLM reads quantized (GPTQ, AWQ), or drop the flag",
        )
    # request.loader_name is ignored: vLLM reads the checkpoint itself (GPTQ and AWQ folders included).


def round_rank(needed: int) -> int:
    return next((rank for rank in MAX_LORA_RANKS if rank >= needed), MAX_LORA_RANKS[-1])


def adapter_ranks(folders) -> list[int]:
    ranks = []
    for folder in folders:
        try:
            config = json.loads((Path(folder) / "adapter_config.json").read_text())
            ranks.append(max([int(config.get("r") or 0), *(int(v) for v in (config.get("rank_pattern") or {}).values())]))
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # not an adapter: vLLM's resolver will not serve it either
    return ranks


def max_lora_rank(request, served: dict[str, Path]) -> int:
    """Room for each served adapter and for mixtures of the MIX_PARTS largest ``loras/`` adapters."""
    if os.environ.get(RANK_ENV):
        return int(os.environ[RANK_ENV])
    if "max_lora_rank" in request.extra:
        return int(request.extra["max_lora_rank"])
    folders = list(served.values())
    if request.loras_dir is not None and Path(request.loras_dir).is_dir():
        folders += [child for child in Path(request.loras_dir).iterdir() if child.is_dir()]
    ranks = sorted(adapter_ranks(folders), reverse=True)
    return round_rank(max(sum(ranks[:MIX_PARTS]), max(ranks, default=8), 8))


def build_launch(request, python: Path, served: dict[str, Path], site_dir: Path, mixture_cache: Path) -> Launch:
    """argv and environment for vLLM's server; ``served`` = ``--lora`` names -> folders to preload."""
    refuse_unsupported(request)
    max_loaded = max(1, int(request.max_loaded_loras))
    argv = [
        str(python), "-m", SERVER_MODULE,
        "--model", str(request.model_path), "--served-model-name", request.model_id,
        "--host", request.host, "--port", str(request.port),
        "--dtype", vllm_dtype(request.load_options),
        "--max-num-seqs", str(max(1, int(request.max_batch))),
        "--enable-lora", "--max-lora-rank", str(max_lora_rank(request, served)),
        "--max-loras", str(min(max_loaded, max(1, int(request.max_batch)))), "--max-cpu-loras", str(max_loaded),
        # OpenAI semantics: no sampling defaults taken from the model's generation_config.json.
        "--generation-config", "vllm",
        "--disable-log-stats",
        # runtime loading of adapters only from loras/ or the hub, as in lorakit's own engine
        "--middleware", "lorakit_vllm_resolver.guard.guard_lora_paths",
    ]
    if served:
        argv += ["--lora-modules", *(f"{name}={folder}" for name, folder in served.items())]
    if getattr(request.load_options, "trust_remote_code", False):
        argv.append("--trust-remote-code")
    argv += list(request.extra.get("vllm_args", ())) + shlex.split(os.environ.get(EXTRA_ARGS_ENV, ""))
    env = {
        # lorakit's own PYTHONPATH must not leak into vLLM's interpreter: only the resolver's site.
        "PYTHONPATH": str(site_dir),
        "VLLM_PLUGINS": PLUGIN_NAME,
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true",
        "LORAKIT_VLLM_LORAS_DIR": str(request.loras_dir or ""),
        "LORAKIT_VLLM_NAMED": json.dumps({name: [str(folder), float(weight)] for name, folder, weight in request.loras}),
        "LORAKIT_VLLM_MIXTURE_CACHE": str(mixture_cache),
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    # vLLM-CPU reserves a share of RAM for the KV cache; 1 GiB holds several 8k contexts of a small model.
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    if request.api_key:
        env["VLLM_API_KEY"] = request.api_key
    return Launch(argv, env, dict(served))


def child_environment(launch: Launch) -> dict[str, str]:
    """The parent's environment minus lorakit's Python settings and any stale key, plus the launch's."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VLLM_API_KEY", "VIRTUAL_ENV")}
    env.update(launch.env)
    return env
