"""The work behind ``lorakit generate``: prompts in, text (or JSONL) out, LoRAs compared on request."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from lorakit.errors import UsageError
from lorakit.inference.generation import SamplingSettings, generate
from lorakit.inference.prompts import encode, pick_prompt_format, render
from lorakit.loaders.options import LoadOptions
from lorakit.output.console import err_console, info, stdout_is_terminal, warn

_PER_LINE_SETTINGS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "greedy")


@dataclass
class GenerateJob:
    model: str | None
    loras: tuple
    loader_name: str | None
    options: LoadOptions
    settings: SamplingSettings
    template: str
    compare: bool
    as_json: bool
    stream: bool


def read_prompts(source: str, base: SamplingSettings | None = None) -> list[dict]:
    """JSONL prompts: an object with ``prompt`` (or ``instruction``), optional ``input``/``system`` and
    per-line sampling overrides, or a bare JSON string. Every line is checked (types and values, on top
    of ``base``) before anything runs, and an error names its line."""
    from lorakit.store.rows import parse_rows, read_text

    if source == "-":
        text = sys.stdin.read()
    elif not Path(source).is_file():
        raise UsageError(f"--input-file '{source}' does not exist")
    else:
        text = read_text(Path(source), f"--input-file '{source}'")
    items = []
    for label, data in parse_rows(text, source, lines=True, error=UsageError):
        if isinstance(data, str):
            data = {"prompt": data}
        if not isinstance(data, dict) or not isinstance(data.get("prompt", data.get("instruction")), str):
            raise UsageError(f"{source} {label} has no \"prompt\" string", "write {\"prompt\": \"...\"} per line")
        for key in ("input", "system"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise UsageError(f'{source} {label}: "{key}" must be a string, not {json.dumps(data[key])}')
        data.setdefault("prompt", data.get("instruction"))
        _settings_for(data, base or SamplingSettings(), f"{source} {label}")
        items.append(data)
    if not items:
        raise UsageError(f"--input-file '{source}' has no prompts")
    return items


def _settings_for(item: dict, base: SamplingSettings, source: str | None = None) -> SamplingSettings:
    from lorakit.inference.generation import check_types

    overrides = {key: item[key] for key in _PER_LINE_SETTINGS if key in item}
    check_types(overrides, source)
    settings = replace(base, **overrides)
    settings.validate(source if overrides else None)
    return settings


def _emit_stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run_job(job: GenerateJob, items: list[dict]) -> None:
    from lorakit.inference.planning import open_session

    session, plan = open_session(job.model, job.loras, job.loader_name, job.options)
    trained = [t for t in plan.trained_templates() if t]
    records = [lora.adapter.prompt_format for lora in plan.loras if lora.adapter.prompt_format]
    template, templates = pick_prompt_format(job.template, session.tokenizer, records)
    for trained_template in set(trained):
        if trained_template != template:
            warn(f"a LoRA was trained with the '{trained_template}' prompt format but --template {template} is used; output may be poor")
    lora_records = [{"name": lora.name, "weight": lora.weight, "path": str(lora.path)} for lora in session.loras]

    for item in items:
        settings = _settings_for(item, job.settings)
        if job.compare and settings.seed is None and not settings.greedy:
            settings = replace(settings, seed=random.randrange(2**31))  # both sides sample with the same RNG
        text, special = render(template, session.tokenizer, item["prompt"], item.get("input"), item.get("system"), templates, warn)
        input_ids = encode(session.tokenizer, text, special)
        record = {"prompt": item["prompt"], "template": template, "loras": lora_records, "seed": settings.seed}
        if item.get("input"):
            record["input"] = item["input"]
        if job.compare:
            with session.only([]):
                base = generate(session, input_ids, settings)
            record["base_output"] = base.text
        on_text = _emit_stream if job.stream and not job.compare else None
        result = generate(session, input_ids, settings, on_text=on_text)
        record.update(output=result.text, new_tokens=result.new_tokens, tokens_per_s=round(result.tokens_per_s, 2), finish_reason=result.finish_reason)
        if job.as_json:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        elif job.compare:
            _show_comparison(record)
        else:
            sys.stdout.write("\n")
        info(f"{result.new_tokens} tokens in {result.seconds:.2f} s ({result.tokens_per_s:.1f} tokens/s), stopped at {result.finish_reason}")


def _show_comparison(record: dict) -> None:
    label = " + ".join(f"{lora['name']}:{lora['weight']:g}" for lora in record["loras"])
    if stdout_is_terminal():
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=True, expand=True)
        table.add_column("base")
        table.add_column(f"with {label}")
        table.add_row(record["base_output"], record["output"])
        Console().print(table)
        return
    err_console().print("--- base", markup=False)
    sys.stdout.write(record["base_output"] + "\n")
    err_console().print(f"--- with {label}", markup=False)
    sys.stdout.write(record["output"] + "\n")
