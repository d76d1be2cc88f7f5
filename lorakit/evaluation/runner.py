"""One ``lorakit eval`` run: check everything cheap first, answer from the cache when it can,
load the model once, and score every configuration on the same windows.

Order of work, so bad input fails in a second rather than after a model load:
window settings -> dataset found and fingerprinted -> LoRAs and model resolved -> cache lookup ->
tokenizer only: dataset tokenized, empty / too-short data refused -> model loaded, LoRAs attached
once -> each configuration scored -> cache + log written after each configuration.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import LorakitError, UsageError
from lorakit.evaluation import records
from lorakit.evaluation.configs import EvalConfig, LoraRef, Switcher, build_configs
from lorakit.evaluation.documents import tokenize_dataset
from lorakit.evaluation.report import add_deltas, perplexity
from lorakit.evaluation.sources import resolve_dataset
from lorakit.evaluation.windows import check_window_settings, plan_windows
from lorakit.loaders.options import LoadOptions
from lorakit.output.console import err_console, info, warn

DEFAULT_MAX_LENGTH = 1024


@dataclass
class EvalRequest:
    dataset: str
    model: str | None = None
    loras: tuple = ()
    compare: str | None = None
    text_field: str | None = None
    fmt: str | None = None
    add_eos: bool = False
    score_after: str | None = None  # --train-only-after
    max_length: int | None = None
    stride: int | None = None
    batch_size: int | None = None
    loader_name: str | None = None
    options: LoadOptions = field(default_factory=LoadOptions)
    comment: str = ""
    use_cache: bool = True
    generic: bool = False  # score through Session.forward_logits only (tests and benchmarks)


def model_context(model_path: Path) -> int | None:
    """The model's context length from config.json, when it states one."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(section.get(key), int) and section[key] > 0:
                return section[key]
    return None


def window_settings(max_length: int | None, stride: int | None, context: int | None) -> tuple[int, int]:
    """Defaults: 1024 tokens (or the model's context if smaller), stride half of it."""
    length = max_length if max_length is not None else min(DEFAULT_MAX_LENGTH, context or DEFAULT_MAX_LENGTH)
    step = stride if stride is not None else max(1, length // 2)
    check_window_settings(length, step, context)
    return length, step


def precision_text(options: LoadOptions) -> tuple[str, str]:
    """(device, dtype) as they will be used, known before anything is loaded."""
    from lorakit.loaders.devices import pick_device, torch_dtype

    device = pick_device(options.cpu)
    dtype = str(torch_dtype(options.dtype, device)).replace("torch.", "")
    quant = options.quantization()
    return device, dtype + (f"+{quant}" if quant else "")


class Run:
    def __init__(self, request: EvalRequest):
        from lorakit.loaders.registry import check_loader_name, check_lora_plan, choose_loader
        from lorakit.hub.resolve import resolve_model

        self.request = request
        if request.max_length is not None and request.stride is not None:
            check_window_settings(request.max_length, request.stride)
        self.dataset = resolve_dataset(request.dataset, request.text_field, request.fmt, request.add_eos, request.score_after)
        self.configs, self.refs = build_configs(request.loras, request.compare)
        check_loader_name(request.loader_name)  # before a GGUF MODEL is converted
        self.model_path = resolve_model(request.model)
        self.loader = choose_loader(self.model_path, request.options, request.loader_name)
        for config in self.configs:  # a LoRA set or weight the backend cannot do fails before any load
            check_lora_plan(self.loader, [weight for _, weight in config.terms])
        self.planned = self._preflight()
        self.max_length, self.stride = window_settings(request.max_length, request.stride, model_context(self.model_path))
        self.device, self.dtype = precision_text(request.options)
        self.dataset_hash = self.dataset.fingerprint()
        self.model_hash = records.model_fingerprint(self.model_path)
        self.adapter_hashes = {ref.key: records.adapter_hash(ref.path) for ref in self.refs}

    def _preflight(self) -> dict:
        """Every adapter read and checked against the base (the pre-flight generate and apply use),
        before the cache is asked or the dataset tokenized: ``{ref key: planned LoRA}``."""
        from lorakit.inference.planning import check_planned_lora, plan_paths

        options = self.request.options
        planned = plan_paths([ref.path for ref in self.refs], options)
        for lora in planned:
            check_planned_lora(self.loader, lora, self.model_path, options)
        return {ref.key: lora for ref, lora in zip(self.refs, planned)}

    # ---- identity, cache ---------------------------------------------------------------------
    def key(self, config: EvalConfig) -> str:
        return records.cache_key({
            "model": str(self.model_path.resolve()), "model_hash": self.model_hash, "loader": self.loader.name,
            "device": self.device, "dtype": self.dtype,
            "loras": [[self.adapter_hashes[ref.key], weight] for ref, weight in config.terms],
            "dataset_hash": self.dataset_hash, "max_length": self.max_length, "stride": self.stride,
        })

    def results(self) -> list[dict]:
        rows: dict[str, dict] = {}
        missing = []
        for config in self.configs:
            cached = records.cache_get(self.key(config)) if self.request.use_cache else None
            if cached is not None:
                # The key holds contents, not paths: show where they are now.
                rows[config.label] = {**cached, "cached": True, "model": str(self.model_path), "dataset": str(self.dataset.path)}
            else:
                missing.append(config)
        if len(missing) < len(self.configs):
            info(f"{len(self.configs) - len(missing)} of {len(self.configs)} result(s) come from the cache (--no-cache recomputes)")
        if missing:
            for row in self.compute(missing):
                rows[row["configuration"]] = row
        ordered = [rows[config.label] for config in self.configs]
        add_deltas(ordered)
        return ordered

    # ---- computing ---------------------------------------------------------------------------
    def compute(self, configs: list[EvalConfig]) -> list[dict]:
        from lorakit.evaluation.scoring import (
            WindowScorer,
            auto_batch_size,
            count_targets,
            vocab_size,
        )

        tokenizer = self._tokenizer()
        tokenized = tokenize_dataset(self.dataset, tokenizer)
        for note in tokenized.notes:
            warn(note)
        documents = tokenized.documents
        total = tokenized.total_tokens
        if total < self.max_length:
            raise UsageError(
                f"the dataset has {total} tokens, fewer than one window of --max-length {self.max_length}",
                f"pass --max-length {total} (or less) to score it in a single window, or use a longer text",
            )
        windows = plan_windows([int(doc.ids.numel()) for doc in documents], self.max_length, self.stride)
        targets = count_targets(documents, windows)
        if targets == 0:
            raise LorakitError(f"no token of {self.dataset.describe()} is scored (every label is masked)", "check --format")
        session, switcher = self._open(configs)
        try:
            batch = self.request.batch_size or auto_batch_size(self.device, self.max_length, self.stride, vocab_size(session))
            scorer = WindowScorer(session, documents, batch, generic=self.request.generic)
            info(
                f"Scoring {targets:,} tokens of {len(documents)} document(s) in {len(windows)} windows "
                f"(max length {self.max_length}, stride {self.stride}, {batch} per batch) for {len(configs)} configuration(s)"
            )
            rows = []
            with _progress() as progress:
                for config in configs:
                    meter = _Meter(progress, progress.add_task(config.label, total=len(windows), rate=""))
                    with switcher.activate(config):
                        nll = scorer.score(windows, meter.advance)
                    row = self._row(config, nll.mean_nll, nll.tokens, len(windows), meter.seconds())
                    records.cache_put(self.key(config), row)
                    records.log_append([self._log_record(row)])
                    rows.append(row)
            return rows
        finally:
            session.close()

    def _tokenizer(self):
        from lorakit.output.quiet import quiet_libraries

        quiet_libraries()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=self.request.options.trust_remote_code)

    def _open(self, configs: list[EvalConfig]):
        from lorakit.inference.planning import Plan, open_planned

        options = self.request.options
        used = [ref for ref in self.refs if any(ref is term_ref for config in configs for term_ref, _ in config.terms)]
        plan = Plan(self.model_path, self.loader, [self.planned[ref.key] for ref in used])  # checked in _preflight
        all_at_once = self.loader.capabilities.accepts(len(used))
        if not all_at_once:
            info(f"loader '{self.loader.name}' holds {self.loader.capabilities.lora_limit_text()} LoRA at a time: attaching them per configuration")
        session = open_planned(plan, options, attach=all_at_once)
        for ref, lora in zip(used, plan.loras):
            ref.session_name = lora.name
        return session, Switcher(session, used, all_at_once)

    def _row(self, config: EvalConfig, mean_nll: float, tokens: int, windows: int, seconds: float) -> dict:
        return {
            "configuration": config.label,
            "loras": [_lora_record(ref, weight, self.adapter_hashes[ref.key]) for ref, weight in config.terms],
            "perplexity": perplexity(mean_nll),
            "mean_nll": mean_nll,
            "tokens": tokens,
            "windows": windows,
            "model": str(self.model_path),
            "dataset": str(self.dataset.path),
            "dataset_hash": self.dataset_hash,
            "dataset_options": self.dataset.options_text(),
            "max_length": self.max_length,
            "stride": self.stride,
            "loader": self.loader.name,
            "device": self.device,
            "dtype": self.dtype,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "comment": self.request.comment or "",
            "cached": False,
        }

    @staticmethod
    def _log_record(row: dict) -> dict:
        return {
            **row,
            "loras": ";".join(f"{lora['path']}:{lora['weight']:g}" for lora in row["loras"]),
            "adapter_hash": ";".join(lora["hash"][:16] for lora in row["loras"]),
            "dataset_hash": row["dataset_hash"][:16],
            "perplexity": f"{row['perplexity']:.6f}",
            "mean_nll": f"{row['mean_nll']:.8f}",
        }


def _lora_record(ref: LoraRef, weight: float, digest: str) -> dict:
    return {"name": ref.typed, "path": str(ref.path), "weight": weight, "hash": digest}


class _Meter:
    """Moves one configuration's bar and shows its scored tokens per second."""

    def __init__(self, progress, task):
        self.progress, self.task = progress, task
        self.started = time.perf_counter()
        self.tokens = 0

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def advance(self, windows: int, tokens: int) -> None:
        self.tokens += tokens
        self.progress.update(self.task, advance=windows, rate=f"{self.tokens / max(self.seconds(), 1e-9):,.0f} tok/s")


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err_console(),
    )


def run_eval(request: EvalRequest) -> list[dict]:
    return Run(request).results()
