"""The ``README.md`` model card of an adapter: what it is for, how it was made, how to use it.

Built from what lorakit keeps beside the weights (``adapter_config.json``, ``training_parameters.json``,
``training_log.json``, ``prompt_format.json``, ``loss_curve.png``) and, when given, the eval
history's rows for this adapter. The YAML header uses the hub's metadata keys (``base_model``,
``library_name: peft``...), so the hub links the adapter to its base. Nothing here imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CARD_FILE = "README.md"
PARAMS_FILE = "training_parameters.json"
LOG_FILE = "training_log.json"
PLOT_FILE = "loss_curve.png"
PROMPT_FORMAT_FILE = "prompt_format.json"
CARD_PARAMS = ("model", "dataset", "format", "raw_text", "rank", "alpha", "dropout", "target_modules", "learning_rate",
               "scheduler", "epochs", "micro_batch_size", "batch_size", "cutoff_len", "warmup_steps", "optimizer",
               "precision", "seed", "load_in_4bit", "load_in_8bit")


@dataclass
class CardFacts:
    name: str
    base_model: str | None  # a hub id when known
    base_revision: str | None = None
    repo_id: str | None = None  # where the adapter lives on the hub, once uploaded
    eval_rows: list[dict] = field(default_factory=list)  # rows of $LORAKIT_HOME/evaluations.csv for this adapter


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _yaml_list(values) -> str:
    return "[" + ", ".join(json.dumps(str(v)) for v in values) + "]"


def _header(facts: CardFacts, dataset: str | None) -> list[str]:
    lines = ["---"]
    if facts.base_model:
        lines.append(f"base_model: {json.dumps(facts.base_model)}")
    lines += ["library_name: peft", "pipeline_tag: text-generation", f"tags: {_yaml_list(['lora', 'peft', 'lorakit'])}"]
    if dataset and _looks_like_hub_id(dataset):
        lines.append(f"datasets: {_yaml_list([dataset.split('@')[0].split(':')[0]])}")
    lines.append("---")
    return lines


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()


def _loss_section(folder: Path) -> list[str]:
    log = _read_json(folder / LOG_FILE) or {}
    steps = [s for s in log.get("steps", []) if isinstance(s, dict) and "loss" in s]
    lines = ["## Loss", ""]
    if not steps:
        return lines + ["No training log was found beside the adapter.", ""]
    picked = steps if len(steps) <= 10 else [steps[round(i * (len(steps) - 1) / 9)] for i in range(10)]
    lines += ["| step | training loss | eval loss |", "| ---: | ---: | ---: |"]
    for entry in picked:
        eval_loss = next((s.get("eval_loss") for s in log.get("steps", []) if s.get("step") == entry["step"] and "eval_loss" in s), None)
        lines.append(f"| {entry['step']} | {entry['loss']:.4f} | {'' if eval_loss is None else f'{eval_loss:.4f}'} |")
    if (folder / PLOT_FILE).is_file():
        lines += ["", f"![loss curve]({PLOT_FILE})"]
    return lines + [""]


def _eval_section(rows: list[dict], name: str) -> list[str]:
    lines = ["## Evaluation", ""]
    if not rows:
        return lines + [f"No evaluation recorded yet (`lorakit eval MODEL --lora {name} --dataset FILE` records one).", ""]
    lines += ["| date | dataset | configuration | perplexity | tokens |", "| --- | --- | --- | ---: | ---: |"]
    for row in rows[-10:]:
        dataset = Path(str(row.get("dataset", ""))).name
        lines.append(f"| {row.get('date', '')} | {dataset} | {row.get('configuration', '')} | {row.get('perplexity', '')} | {row.get('tokens', '')} |")
    return lines + [""]


def _usage_section(facts: CardFacts) -> list[str]:
    adapter = facts.repo_id or facts.name
    base = facts.base_model or "BASE_MODEL"
    revision = f", revision={json.dumps(facts.base_revision)}" if facts.base_revision else ""
    return [
        "## Use it", "",
        "With [lorakit](https://github.com/lorakit/lorakit) (hub ids are downloaded on first use):", "",
        "```bash", f"lorakit generate {base} --lora {adapter} --prompt \"Hello\"", "```", "",
        "With PEFT:", "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f"base = AutoModelForCausalLM.from_pretrained({json.dumps(base)}{revision})",
        f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(base)}{revision})",
        f"model = PeftModel.from_pretrained(base, {json.dumps(adapter)})",
        "```", "",
        "With llama.cpp (convert the adapter to a GGUF LoRA, then load it beside the base's GGUF):", "",
        "```bash",
        f"lorakit merge {base} --lora {adapter} --format gguf-lora --output adapter.gguf",
        "llama-cli -m base.gguf --lora adapter.gguf -p \"Hello\"",
        "```", "",
    ]


def render_card(folder: Path, facts: CardFacts) -> str:
    folder = Path(folder)
    config = _read_json(folder / "adapter_config.json") or {}
    params = _read_json(folder / PARAMS_FILE) or {}
    prompt = _read_json(folder / PROMPT_FORMAT_FILE) or {}
    dataset = params.get("dataset") or params.get("raw_text")
    lines = _header(facts, dataset)
    lines += ["", f"# {facts.name}", ""]
    base = facts.base_model or str(config.get("base_model_name_or_path") or "an unrecorded base model")
    at = f" at revision `{facts.base_revision}`" if facts.base_revision else ""
    lines += [f"A LoRA adapter for `{base}`{at}, made with lorakit, in PEFT's format "
              f"(`adapter_config.json` + `adapter_model.safetensors`).", ""]
    lines += ["## Adapter", "", "| setting | value |", "| --- | --- |"]
    for key in ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_rslora", "use_dora"):
        if key in config:
            value = config[key]
            lines.append(f"| {key} | {', '.join(sorted(value)) if isinstance(value, list) else value} |")
    lines.append("")
    lines += ["## Training", ""]
    if params:
        lines += [f"Dataset: `{dataset}`" if dataset else "Dataset: not recorded", ""]
        if prompt.get("template"):
            lines += [f"Prompt format: `{prompt['template']}` (lorakit uses it again when generating).", ""]
        lines += ["| parameter | value |", "| --- | --- |"]
        for key in CARD_PARAMS:
            if key in params and params[key] not in (None, "", []):
                value = params[key]
                lines.append(f"| {key} | {', '.join(map(str, value)) if isinstance(value, list) else value} |")
        lines.append("")
    else:
        lines += ["No training parameters were recorded (the adapter was not trained by lorakit).", ""]
    lines += _loss_section(folder)
    lines += _eval_section(facts.eval_rows, facts.name)
    lines += _usage_section(facts)
    return "\n".join(lines).rstrip() + "\n"


def finish_trained_adapter(folder: Path, model_path: Path) -> CardFacts:
    """After training: name the base by its hub id and commit when it came from the hub, and write the card.

    ``base_model_name_or_path`` then lets PEFT (and the hub) find the base anywhere, instead of a
    path that exists only on this machine.
    """
    from lorakit.hub.integrity import hub_origin
    from lorakit.store.atomic import atomic_write_text

    folder = Path(folder)
    origin = hub_origin(Path(model_path))
    if origin is not None:
        config_path = folder / "adapter_config.json"
        config = _read_json(config_path)
        if isinstance(config, dict):
            config["base_model_name_or_path"] = origin[0]
            if origin[1]:
                config["revision"] = origin[1]
            atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    facts = CardFacts(folder.name, origin[0] if origin else None, origin[1] if origin else None)
    atomic_write_text(folder / CARD_FILE, render_card(folder, facts))
    return facts
