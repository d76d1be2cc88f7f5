"""Training parameters: defaults, a YAML/JSON config file, the saved ``training_parameters.json``.

Defaults are text-generation-webui's classic trainer values (rank 32, alpha 64, dropout 0.05, q/v
projections, lr 3e-4, linear schedule, 3 epochs, micro batch 4, batch 128, 100 warmup steps, cutoff
256, overlap 128) so its users get what they know. Two additions: ``seed`` 42 (the webui had none,
so runs were not repeatable) and ``precision auto`` (bf16 autocast where the CPU/GPU supports it: it
measured ~1.5x faster than fp32 on this project's CPUs at the same loss).

Precedence, lowest first: defaults, ``--copy-from`` (a LoRA's saved parameters), ``--config FILE``,
then the flags typed on the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.errors import UsageError
from lorakit.training.sharding import SHARD_MODES

SCHEDULERS = ("linear", "constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "polynomial", "inverse_sqrt")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adafactor", "sgd", "adagrad", "rmsprop", "adamw_bnb_8bit", "paged_adamw_8bit")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
REPORT_TO = ("none", "tensorboard", "wandb", "mlflow")
INIT_METHODS = ("default", "gaussian", "pissa", "olora", "orthogonal", "false")
ALL_LINEAR = "all-linear"
EXPERT_MODES = ("auto", "target", "skip")
PARAMS_FILE = "training_parameters.json"
MAX_EPOCHS = 1_000_000  # far beyond any real run; above it the step count is not even a number

# Keys of text-generation-webui's training_parameters.json, so its saved files load here too.
WEBUI_ALIASES = {
    "lora_name": "name", "lora_rank": "rank", "lora_alpha": "alpha", "lora_dropout": "dropout",
    "lr_scheduler_type": "scheduler", "raw_text_file": "raw_text", "add_eos_token": "add_eos",
    "lr": "learning_rate", "r": "rank",
}
WEBUI_IGNORED = ("always_override", "higher_rank_limit", "q_proj_en", "v_proj_en", "k_proj_en", "o_proj_en",
                 "gate_proj_en", "down_proj_en", "up_proj_en", "all_linear", "lorakit")


@dataclass
class TrainParams:
    name: str | None = None
    model: str | None = None
    dataset: str | None = None
    format: str | None = None
    raw_text: str | None = None
    eval_dataset: str | None = None
    rank: int = 32
    alpha: float = 64.0
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    experts: str = "auto"  # mixture-of-experts experts: auto (refuse to skip them silently), target, skip
    learning_rate: float = 3e-4
    scheduler: str = "linear"
    epochs: float = 3.0
    micro_batch_size: int = 4
    batch_size: int = 128
    warmup_steps: int = 100
    optimizer: str = "adamw_torch"
    cutoff_len: int = 256
    overlap_len: int = 128
    newline_favor_len: int = 128
    hard_cut_string: str = "\\n\\n\\n"
    min_chars: int = 0
    add_eos: bool = False
    train_only_after: str = ""
    stop_at_loss: float = 0.0
    eval_steps: int = 100
    save_steps: int = 0
    seed: int = 42
    precision: str = "auto"
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    loader: str = "auto"
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: str = "default"
    report_to: str = "none"  # none, or one or more of tensorboard, wandb, mlflow (comma-separated)
    gradient_checkpointing: bool = False
    weight_decay: float = 0.0
    max_steps: int = 0  # 0 = as many steps as --epochs gives
    val_set_size: float = 0.0  # >= 1: that many examples held out; in (0, 1): that fraction; 0: none
    load_best: bool = False
    early_stopping_patience: int = 0  # evaluations without a lower eval loss before stopping; 0 = never
    shard: str = "none"  # none or fsdp2 (training/sharding.py)

    # ---- derived values --------------------------------------------------------------------
    def grad_accumulation(self, world_size: int = 1) -> int:
        """Micro-batches each process accumulates per optimizer step (the webui's batch // micro)."""
        return max(1, self.batch_size // (self.micro_batch_size * max(1, world_size)))

    def trackers(self) -> list[str]:
        """The experiment trackers of ``--report-to`` (an empty list for none)."""
        names = [item.strip().lower() for item in re.split(r"[,\s]+", str(self.report_to or "")) if item.strip()]
        return [name for name in dict.fromkeys(names) if name != "none"]

    def structural(self) -> dict:
        """What decides the adapter's tensor layout: a resume with other values is refused."""
        return {"rank": self.rank, "target_modules": sorted(self.target_modules), "use_dora": self.use_dora,
                "experts": self.experts}  # target / skip change which expert weights carry LoRA tensors

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, **meta) -> str:
        data = self.to_dict()
        if meta:
            data["lorakit"] = meta
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


FIELD_TYPES = {f.name: f for f in dataclasses.fields(TrainParams)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """Turn a config-file value into the field's type, or say which key is wrong."""
    default = FIELD_TYPES[key].default
    if key == "target_modules":
        return parse_target_modules(value)
    if key == "report_to" and isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)  # transformers' TrainingArguments takes a list
    if value is None:
        return None
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: '{key}' has an invalid value {value!r}", f"expected {type(default).__name__}") from None


def parse_target_modules(value: Any) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in re.split(r"[,\s]+", value) if item.strip()]
    elif isinstance(value, (list, tuple)):
        items = [str(item).strip() for item in value if str(item).strip()]
    else:
        raise UsageError(f"target modules must be a list or a comma-separated string, not {value!r}")
    if any(item.lower() in ("all", "all-linear", "all_linear") for item in items):
        return [ALL_LINEAR]
    if not items:
        raise UsageError("--target-modules is empty", "name projections (q_proj,v_proj) or pass all-linear")
    return items


def normalise_mapping(data: dict, source: str) -> dict:
    """Config keys (dashes or underscores, webui aliases) -> TrainParams field values."""
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).strip().replace("-", "_")
        key = WEBUI_ALIASES.get(key, key)
        if key in WEBUI_IGNORED:
            continue
        if key not in FIELD_TYPES:
            raise UsageError(f"{source}: unknown parameter '{raw_key}'", "see `lorakit train --help` for the parameter names")
        out[key] = _coerce(key, value, source)
    return out


def read_config_file(path: str | Path) -> dict:
    """A YAML or JSON mapping of parameters; errors name the file and the line."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"config file '{path}' not found")
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"config file '{path}' is not valid JSON (line {error.lineno}: {error.msg})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UsageError(f"config file '{path}' is not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"config file '{path}' must hold a mapping of parameter names to values")
    return normalise_mapping(data, f"config file '{path}'")


def params_from_lora(lora: str | Path) -> dict:
    """The saved parameters of an existing LoRA (a name under loras/ or a folder)."""
    from lorakit.hub.resolve import hub_ref, resolve_lora
    from lorakit.store import home

    folder = Path(lora).expanduser()
    if not folder.is_dir():
        folder = home.loras_dir() / str(lora)
    if not folder.is_dir() and hub_ref(str(lora)) is not None:
        folder = resolve_lora(str(lora))  # a hub id: fetched once through the download store
    file = folder / PARAMS_FILE
    if not file.is_file():
        raise UsageError(f"--copy-from: '{lora}' has no {PARAMS_FILE}", f"looked in {folder}")
    values = read_config_file(file)
    values.pop("name", None)  # copying parameters never copies the name (that would overwrite it)
    return values


def validate(params: TrainParams, resuming: bool = False) -> None:
    """One clear line for each bad value, before anything is loaded or written."""
    p = params
    for key, spec in FIELD_TYPES.items():  # every float parameter, new ones included: inf and nan are never meant
        value = getattr(p, key)
        if isinstance(spec.default, float) and isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{key.replace('_', '-')} must be a finite number (got {value})")
    if p.experts not in EXPERT_MODES:
        raise UsageError(f"unknown --experts '{p.experts}'", "choose one of: " + ", ".join(EXPERT_MODES))
    if p.scheduler not in SCHEDULERS:
        raise UsageError(f"unknown scheduler '{p.scheduler}'", "choose one of: " + ", ".join(SCHEDULERS))
    if p.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer '{p.optimizer}'", "choose one of: " + ", ".join(OPTIMIZERS))
    if p.precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{p.precision}'", "choose one of: " + ", ".join(PRECISIONS))
    for tracker in p.trackers():
        if tracker not in REPORT_TO:
            raise UsageError(f"unknown --report-to '{tracker}'", "choose none, or one or more of tensorboard, wandb, mlflow (comma-separated)")
    if p.shard not in SHARD_MODES:
        raise UsageError(f"unknown --shard '{p.shard}'", "choose one of: " + ", ".join(SHARD_MODES))
    if str(p.init_lora_weights).lower() not in INIT_METHODS:
        raise UsageError(f"unknown --init-lora-weights '{p.init_lora_weights}'", "choose one of: " + ", ".join(INIT_METHODS))
    if p.rank < 1:
        raise UsageError(f"--rank must be at least 1 (got {p.rank})", "a rank-0 LoRA has no weights; try 8, 16 or 32")
    if p.alpha <= 0:
        raise UsageError(f"--alpha must be positive (got {p.alpha:g})")
    if not 0 <= p.dropout < 1:
        raise UsageError(f"--dropout must be in [0, 1) (got {p.dropout:g})")
    if not p.learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive (got {p.learning_rate:g})")
    if not 0 < p.epochs <= MAX_EPOCHS:
        raise UsageError(f"--epochs must be positive and at most {MAX_EPOCHS:,} (got {p.epochs:g})")
    if p.micro_batch_size < 1:
        raise UsageError(f"--micro-batch-size must be at least 1 (got {p.micro_batch_size})")
    if p.batch_size < p.micro_batch_size:
        raise UsageError(
            f"--batch-size {p.batch_size} is smaller than --micro-batch-size {p.micro_batch_size}",
            "the batch is accumulated from micro-batches; raise --batch-size or lower --micro-batch-size",
        )
    for flag, value in (("--warmup-steps", p.warmup_steps), ("--eval-steps", p.eval_steps), ("--save-steps", p.save_steps),
                        ("--max-steps", p.max_steps), ("--early-stopping-patience", p.early_stopping_patience), ("--weight-decay", p.weight_decay),
                        ("--min-chars", p.min_chars), ("--overlap-len", p.overlap_len), ("--newline-favor-len", p.newline_favor_len)):
        if value < 0:
            raise UsageError(f"{flag} must not be negative (got {value})")
    if p.cutoff_len < 2:
        raise UsageError(f"--cutoff-len must be at least 2 tokens (got {p.cutoff_len})")
    if p.raw_text and p.cutoff_len <= p.overlap_len:
        raise UsageError(
            f"--cutoff-len {p.cutoff_len} must be larger than --overlap-len {p.overlap_len}",
            "raw-text windows step by cutoff - overlap tokens",
        )
    if p.stop_at_loss < 0:
        raise UsageError(f"--stop-at-loss must not be negative (got {p.stop_at_loss:g})")
    if p.load_in_8bit and p.load_in_4bit:
        raise UsageError("--load-in-8bit and --load-in-4bit exclude each other", "choose one")
    if bool(p.dataset) == bool(p.raw_text):
        if p.dataset:
            raise UsageError("--dataset and --raw-text exclude each other", "train on one of them")
        raise UsageError("nothing to train on", "pass --dataset FILE (JSON/JSONL) or --raw-text FILE_OR_FOLDER")
    from lorakit.hub.dataset_source import parse_hub_dataset

    source = p.dataset or p.raw_text
    if not Path(source).expanduser().exists() and not (p.dataset and parse_hub_dataset(str(source))):
        flag = "--dataset" if p.dataset else "--raw-text"
        raise UsageError(f"{flag} '{source}' not found")
    if p.eval_dataset and not Path(p.eval_dataset).expanduser().is_file() and not parse_hub_dataset(str(p.eval_dataset)):
        raise UsageError(f"--eval-dataset '{p.eval_dataset}' not found", "pass an existing JSON/JSONL/parquet/CSV file or a hub dataset ORG/NAME[@CONFIG][:SPLIT]")
    if p.name is not None and (not p.name.strip() or "/" in p.name or p.name.startswith(".")):
        raise UsageError(f"--name '{p.name}' is not a valid LoRA name", "use a plain folder name without '/'")
    validate_evaluation(p)


def validate_evaluation(p: TrainParams) -> None:
    """The held-out set and what uses it: a split size that means one thing, and a set to judge by."""
    size = p.val_set_size
    if size < 0 or (size >= 1 and not float(size).is_integer()):
        raise UsageError(
            f"--val-set-size must be a whole number of examples or a fraction between 0 and 1 (got {size:g})",
            "e.g. --val-set-size 200 or --val-set-size 0.05",
        )
    if size and p.eval_dataset:
        raise UsageError("--val-set-size and --eval-dataset exclude each other", "hold out part of --dataset or pass a separate evaluation file, not both")
    has_eval = bool(size or p.eval_dataset)
    for flag, wanted in (("--load-best", p.load_best), ("--early-stopping-patience", p.early_stopping_patience)):
        if wanted and not has_eval:
            raise UsageError(f"{flag} needs an evaluation set", "add --val-set-size N (or a fraction) or --eval-dataset FILE")
        if wanted and p.eval_steps == 0:
            raise UsageError(f"{flag} needs evaluations, but --eval-steps is 0", "pass --eval-steps N")
