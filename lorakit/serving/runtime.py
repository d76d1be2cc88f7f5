"""Load what a :class:`~lorakit.serving.engines.ServeRequest` names: base, adapter pool, engine.

A loader whose capability record has ``serve_per_request`` gets lorakit's per-row engine: the base
is loaded bare and adapters are applied per request (folded when one mix is hot, as per-row deltas
otherwise; ``serve_mixed_batch`` says whether rows with different adapters may share a forward).
Any other loader serves the ``--lora`` set it was started with, attached through the backend's own
session, and answers other adapter names with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.errors import UsageError
from lorakit.inference.planning import PlannedLora, check_planned_lora, plan_paths
from lorakit.loaders.registry import choose_loader
from lorakit.serving.api_errors import ApiError
from lorakit.serving.engine import Engine
from lorakit.serving.engines import ServeRequest
from lorakit.serving.mixes import Mix, canonical
from lorakit.serving.pool import AdapterPool
from lorakit.store.lora_spec import LoraSpec


@dataclass
class Runtime:
    request: ServeRequest
    session: object
    engine: Engine
    pool: AdapterPool | None
    fixed_mix: Mix | None = None
    """Set when the backend holds one LoRA set for the whole server (no per-request adapters)."""

    def acquire(self, mix: Mix, param: str = "model") -> None:
        if self.fixed_mix is not None:
            if mix != self.fixed_mix:
                served = ", ".join(name for name, _ in self.fixed_mix) or self.request.model_id
                raise ApiError(400, f"the '{self.session.loader.name}' loader serves one LoRA set for the whole server ({served}); "
                                    "it cannot switch adapters per request", param, "adapter_not_served")
            return
        self.pool.acquire(mix, param)

    def release(self, mix: Mix) -> None:
        if self.pool is not None and self.fixed_mix is None:
            self.pool.release(mix)

    def close(self) -> None:
        self.engine.stop()


def _checker(loader, model_path, options):
    def check(info) -> None:
        from lorakit.serving.row_loras import unsupported_reason

        lora = PlannedLora(LoraSpec(str(info.path), str(info.path)), info.path.name, info.path, info)
        check_planned_lora(loader, lora, model_path, options)
        reason = unsupported_reason(info)
        if reason:
            raise UsageError(f"lorakit serve applies plain LoRAs per request and {reason}",
                             "merge it into the base with `lorakit merge` and serve the merged model")
    return check


def open_runtime(request: ServeRequest) -> Runtime:
    """Load the base (and, for a backend without per-request adapters, its LoRAs); start nothing yet."""
    from lorakit.inference.planning import Plan, open_planned
    from lorakit.loaders.folding import MergedLoras
    from lorakit.serving.row_loras import RowLoras

    options = request.load_options
    loader = choose_loader(request.model_path, options, request.loader_name)
    caps = loader.capabilities
    if not caps.serve_per_request:
        planned = plan_paths([path for _, path, _ in request.loras], options)
        plan = Plan(request.model_path, loader, planned)
        for lora, (_, _, weight) in zip(planned, request.loras):
            lora.spec = LoraSpec(lora.spec.text, lora.spec.name, weight)
        session = open_planned(plan, options)
        engine = Engine(session.model, session.tokenizer, session.device(), request.max_batch, request.max_queue)
        fixed = canonical((name, weight) for name, _, weight in request.loras)
        return Runtime(request, session, engine, None, fixed)

    session = open_planned(Plan(request.model_path, loader, []), options, attach=False)
    model = session.model
    rows = RowLoras(model)
    folding = None if options.quantization() else MergedLoras(model)
    max_batch = request.max_batch if caps.serve_mixed_batch else 1
    engine = Engine(model, session.tokenizer, session.device(), max_batch, request.max_queue, rows, folding)

    def attach(name, path, info) -> None:
        with engine.paused():
            rows.load(name, path, info)
            if folding is not None and folding.can_take(info):
                folding.add(name, path, info, 1.0)

    def detach(name) -> None:
        with engine.paused():
            rows.unload(name)
            if folding is not None and name in folding.adapters:
                if any(n == name for n, _ in engine.folded):
                    engine._fold(())
                folding.remove(name)
                folding.sync()

    pool = AdapterPool(request.loras_dir, request.max_loaded_loras, _checker(loader, request.model_path, options),
                       attach, detach, request.loras)
    for name, _, weight in request.loras:
        pool.acquire(((name, weight),))
        pool.release(((name, weight),))
    return Runtime(request, session, engine, pool)
