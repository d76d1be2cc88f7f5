"""From ``lorakit serve``'s flags to a checked :class:`ServeRequest` and the engine that runs it.

Everything that can be refused without loading weights is refused here, in a second: the bounds,
the address/key rule, every ``--lora`` found and checked against the base (the same pre-flight as
``generate``), the loader and its options, the engine's name.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from lorakit.errors import UsageError
from lorakit.hub.resolve import resolve_model
from lorakit.inference.planning import check_planned_lora, plan_loras
from lorakit.loaders.registry import check_loader_name, choose_loader
from lorakit.serving.engines import DEFAULT_ENGINE, ServeRequest
from lorakit.store import home


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bounds(port: int, max_batch: int, max_queue: int, max_loaded_loras: int, max_tokens_limit: int) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535 (got {port})")
    for flag, value in (("--max-batch", max_batch), ("--max-loaded-loras", max_loaded_loras), ("--max-tokens-limit", max_tokens_limit)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1 (got {value})")
    if max_queue < 0:
        raise UsageError(f"--max-queue must be 0 or more (got {max_queue})")


def check_address(host: str, api_key: str | None, insecure: bool) -> None:
    if not host.strip():
        raise UsageError("--host is empty", "use 127.0.0.1 (the default) or the address to listen on")
    if api_key is not None and not api_key.strip():
        raise UsageError("--api-key (or LORAKIT_API_KEY) is empty", "give a key, or leave it unset on 127.0.0.1")
    if not is_loopback(host) and api_key is None and not insecure:
        raise UsageError(f"--host {host} lets other machines reach the server, so it needs --api-key (or LORAKIT_API_KEY)",
                         "add --api-key KEY, or --insecure-no-api-key to serve without one")


def build_request(model, lora_texts, *, host, port, api_key, insecure, max_batch, max_queue, max_loaded_loras,
                  max_tokens_limit, options, loader_name, engine: str) -> ServeRequest:
    from lorakit.plugin.host import registered_serve_engines

    check_bounds(port, max_batch, max_queue, max_loaded_loras, max_tokens_limit)
    check_address(host, api_key, insecure)
    engines = registered_serve_engines()
    if engine not in engines:
        raise UsageError(f"unknown serving engine '{engine}'", "installed engines: " + (", ".join(engines) or "none"))
    options.quantization()
    planned = plan_loras(lora_texts, options)
    check_loader_name(loader_name)
    model_path = resolve_model(model)
    loader = choose_loader(model_path, options, loader_name)
    loader.check_options(options)
    if len(planned) > max_loaded_loras:
        raise UsageError(f"{len(planned)} --lora adapters but --max-loaded-loras is {max_loaded_loras}", "raise --max-loaded-loras")
    for lora in planned:
        check_planned_lora(loader, lora, model_path, options)
        if engine == DEFAULT_ENGINE and loader.capabilities.serve_per_request:
            from lorakit.serving.row_loras import unsupported_reason

            reason = unsupported_reason(lora.adapter)
            if reason:
                raise UsageError(f"LoRA '{lora.name}' cannot be served per request: {reason}",
                                 "merge it into the base with `lorakit merge` and serve the merged model")
    return ServeRequest(
        model_path=Path(model_path), model_id=Path(model_path).name,
        loras=tuple((lora.name, lora.path, lora.spec.weight) for lora in planned), loras_dir=home.loras_dir(),
        host=host, port=port, api_key=api_key, max_batch=max_batch, max_queue=max_queue, max_loaded_loras=max_loaded_loras,
        max_tokens_limit=max_tokens_limit, load_options=options, loader_name=loader.name, allow_insecure=insecure,
    )


def run_engine(engine: str, request: ServeRequest) -> int:
    from lorakit.plugin.host import registered_serve_engines

    return int(registered_serve_engines()[engine].run(request) or 0)
