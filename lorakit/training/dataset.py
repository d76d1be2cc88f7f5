"""The training data API: a :class:`DataSpec` in, tokenized :class:`Example` objects and stats out.

``load_examples(tokenizer, spec)`` handles the three kinds of data:

- formatted rows (JSON list or JSON Lines) through a format file: ``--format alpaca`` (shipped),
  ``--format path/to/file.json``, or a formatter plugin; with no ``--format`` the first row decides
  (``messages``/``conversations`` -> the chat template, Alpaca keys -> ``alpaca``);
- chat rows through the tokenizer's chat template, assistant turns trained;
- raw text (``raw_text``), chunked as :mod:`lorakit.training.raw_text` describes.

Defaults follow text-generation-webui's classic trainer: cutoff 256, overlap 128, newline favor
128, hard cut ``\\n\\n\\n``, min chars 0, and ``add_eos`` off. With ``add_eos`` off, formatted rows
end without an end-of-sequence token, exactly as the webui trained them (a LoRA trained that way
keeps writing after its answer: turn ``--add-eos`` on for instruction data). Chat rows need no
flag: the chat template's own end-of-turn token is part of every trained assistant turn.

How the training loop must batch: labels are final (-100 where not trained). Build batches with
:func:`collate` or :func:`pack` (re-exported here); never derive labels or the attention mask from
``input_ids == pad_id``, since the pad id is often the EOS id that the labels train.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from lorakit.errors import LorakitError, UsageError
from lorakit.training.batching import collate, count_target_tokens, pack  # noqa: F401  (public API)
from lorakit.training.formatter_choice import resolve_formatter
from lorakit.training.formatters import RowError
from lorakit.training.masking import (
    IGNORE_INDEX,
    encode_example,
    spans_after_marker,
    special_prefix_ids,
    unescape,
)


@dataclass
class DataSpec:
    dataset: Path | None = None  # JSON / JSONL / parquet / CSV rows (formatted or chat), or a hub dataset id
    format: str | None = None  # shipped name, formatter plugin name, or path to a format file; None = auto
    raw_text: Path | None = None  # .txt file or folder of .txt files
    cutoff_len: int = 256
    overlap_len: int = 128
    newline_favor_len: int = 128
    hard_cut_string: str = "\\n\\n\\n"  # escapes (\n, \t) are decoded, as typed on a command line
    min_chars: int = 0
    add_eos: bool = False
    train_only_after: str | None = None  # escapes decoded too

    def __post_init__(self):
        self.dataset = Path(self.dataset).expanduser() if self.dataset else None
        self.raw_text = Path(self.raw_text).expanduser() if self.raw_text else None
        self.train_only_after = self.train_only_after or None


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # -100 where not trained
    text: str  # the characters the tokens cover
    source: str = ""  # "row 3", "line 7", or "notes.txt block 2"
    char_span: tuple[int, int] | None = None  # raw text: where ``text`` lies in its block

    def to_json(self) -> dict:
        return {"text": self.text, "input_ids": self.input_ids, "labels": self.labels}


@dataclass
class DataStats:
    kind: str = ""  # "format", "chat" or "raw"
    format_name: str = ""  # what template_name() returns
    count: int = 0  # examples produced
    min_tokens: int = 0
    mean_tokens: float = 0.0
    max_tokens: int = 0
    truncated: int = 0  # rows cut by cutoff_len (raw chunks are never cut: they are windows)
    trained_tokens: int = 0  # labels that are not -100
    total_tokens: int = 0
    target_tokens: int = 0  # loss terms after the causal shift
    rows: int = 0  # rows read (formatted / chat)
    skipped_untrained: int = 0  # rows left with no trained token (e.g. the prompt filled the cutoff)
    files: int = 0  # raw text
    blocks_kept: int = 0
    blocks_dropped: int = 0
    eos_added: int = 0
    warnings: list[str] = field(default_factory=list)
    prompt_format: dict = field(default_factory=dict)  # what the adapter's prompt_format.json records

    def as_dict(self) -> dict:
        return asdict(self)


def sample_dataset_path() -> Path:
    """The made-up-facts Alpaca dataset shipped with lorakit (the README's first training job)."""
    return Path(str(resources.files("lorakit") / "data" / "sample_facts.json"))


def sample_config_path() -> Path:
    """``--config sample``: the settings the README's first job uses on the sample dataset."""
    return Path(str(resources.files("lorakit") / "data" / "sample_facts.train.yaml"))


def read_rows(path: Path) -> list[tuple[str, object]]:
    """``[(label, row)]`` from a JSON list or JSON Lines file, a ``.parquet``/``.csv`` file or a hub
    dataset ``ORG/NAME[@CONFIG][:SPLIT]`` (both turned into JSON Lines first); errors name the line."""
    from lorakit.hub.dataset_source import TABLE_SUFFIXES, dataset_rows_file
    from lorakit.store.rows import LINE_SUFFIXES, parse_rows, read_text

    source, path = str(path), Path(path)
    if not path.is_file() or path.suffix.lower() in TABLE_SUFFIXES:
        path = dataset_rows_file(source) or path
    if not path.is_file():
        raise LorakitError(f"dataset file {path} not found", "pass a .json/.jsonl/.parquet/.csv file or a hub dataset ORG/NAME[@CONFIG][:SPLIT]")
    text = read_text(path, f"dataset {path}")
    if not text.strip():
        raise LorakitError(f"dataset {path} is empty", "add rows to it")
    rows = parse_rows(text, f"dataset {path}", lines=path.suffix.lower() in LINE_SUFFIXES)
    if not rows:
        empty = " (an empty list)" if text.lstrip().startswith("[") else ""
        raise LorakitError(f"dataset {path} is empty{empty}", "add rows to it")
    return rows


def _validate(spec: DataSpec) -> None:
    if bool(spec.dataset) == bool(spec.raw_text):
        raise UsageError("give exactly one of --dataset and --raw-text")
    if spec.cutoff_len < 2:
        raise UsageError(f"--cutoff-len must be at least 2 tokens (got {spec.cutoff_len})")
    if min(spec.overlap_len, spec.newline_favor_len, spec.min_chars) < 0:
        raise UsageError("--overlap-len, --newline-favor-len and --min-chars cannot be negative")
    if spec.raw_text:
        if spec.cutoff_len <= spec.overlap_len:
            raise UsageError(
                f"--cutoff-len ({spec.cutoff_len}) must be greater than --overlap-len ({spec.overlap_len})",
                "lower --overlap-len or raise --cutoff-len",
            )
        if spec.train_only_after:
            raise UsageError("--train-only-after applies to --dataset rows, not to --raw-text")


def _formatter_for(spec: DataSpec, rows):
    first = rows[0][1]
    if not isinstance(first, dict):
        raise LorakitError(f"{rows[0][0]} of {spec.dataset} is a {type(first).__name__}, expected a JSON object")
    return resolve_formatter(spec.format, first)


def template_name(spec: DataSpec) -> str:
    """The format's name (``raw`` for raw text), found from the dataset without tokenizing it."""
    return prompt_format_record(spec)["name"]


def prompt_format_record(spec: DataSpec, formatter=None) -> dict:
    """What ``prompt_format.json`` holds: the name, the kind and (for format files) the templates.

    ``load_examples`` passes the formatter it resolved; otherwise it is resolved from the dataset.
    """
    if spec.raw_text and not spec.dataset:
        record = {"name": "raw", "kind": "raw"}
    else:
        formatter = formatter or _formatter_for(spec, read_rows(spec.dataset))
        as_record = getattr(formatter, "as_record", None)
        record = as_record() if callable(as_record) else {"name": formatter.name, "kind": getattr(formatter, "kind", "plugin")}
    record.update(add_eos=spec.add_eos, train_only_after=unescape(spec.train_only_after))
    return record


def check_data(spec: DataSpec) -> None:
    """What can be refused about the data without a tokenizer: the settings, the files, the format
    of the first row. ``train`` calls it before loading anything."""
    from lorakit.training.raw_text import raw_text_files

    _validate(spec)
    if spec.raw_text:
        raw_text_files(spec.raw_text)
    else:
        _formatter_for(spec, read_rows(spec.dataset))


def load_examples(tokenizer, spec: DataSpec) -> tuple[list[Example], DataStats]:
    _validate(spec)
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if spec.add_eos and eos_id is None:
        raise LorakitError("--add-eos needs an end-of-sequence token but the tokenizer has none")
    prefix_ids = special_prefix_ids(tokenizer)
    if spec.raw_text:
        examples, stats = _raw_examples(tokenizer, spec, prefix_ids, eos_id)
    else:
        examples, stats = _row_examples(tokenizer, spec, prefix_ids, eos_id)
    lengths = [len(example.input_ids) for example in examples]
    stats.count = len(examples)
    stats.min_tokens, stats.max_tokens = min(lengths), max(lengths)
    stats.total_tokens = sum(lengths)
    stats.mean_tokens = stats.total_tokens / len(lengths)
    stats.trained_tokens = sum(sum(1 for label in example.labels if label != IGNORE_INDEX) for example in examples)
    stats.target_tokens = count_target_tokens([example.labels for example in examples])
    return examples, stats


def _row_examples(tokenizer, spec: DataSpec, prefix_ids, eos_id) -> tuple[list[Example], DataStats]:
    rows = read_rows(spec.dataset)
    formatter = _formatter_for(spec, rows)
    accepts = getattr(formatter, "accepts", None)
    if callable(accepts) and not any(isinstance(row, dict) and accepts(row) for _, row in rows):
        keys = ", ".join(sorted(rows[0][1])) if isinstance(rows[0][1], dict) else "none"
        raise LorakitError(
            f"format '{formatter.name}' matches none of the {len(rows)} rows of {spec.dataset} (first row keys: {keys})",
            "pick the format that fits the data, or write a format file whose key sets match its fields",
        )
    marker = unescape(spec.train_only_after)
    stats = DataStats(kind=getattr(formatter, "kind", "plugin"), format_name=formatter.name, rows=len(rows),
                      prompt_format=prompt_format_record(spec, formatter))
    examples = []
    for label, row in rows:
        try:
            if not isinstance(row, dict):
                raise RowError(f"is a {type(row).__name__}, expected a JSON object")
            rendered = formatter.render(row, tokenizer)
            spans = rendered.spans()
            if marker:
                spans = spans_after_marker(rendered.text, spans, marker)
        except RowError as error:
            raise LorakitError(f"{label} of {spec.dataset} {error}") from None
        encoded = encode_example(tokenizer, rendered.text, spans, spec.cutoff_len, prefix_ids, eos_id, spec.add_eos)
        stats.truncated += encoded.truncated
        if not encoded.trained_tokens:
            stats.skipped_untrained += 1
            continue
        examples.append(Example(encoded.input_ids, encoded.labels, encoded.text, label))
    if stats.skipped_untrained:
        stats.warnings.append(
            f"{stats.skipped_untrained} of {len(rows)} rows had no trained token left (prompt longer than --cutoff-len "
            f"{spec.cutoff_len}, or nothing after --train-only-after) and were skipped"
        )
    if eos_id is not None and not spec.add_eos and not any(example.labels[-1] == eos_id for example in examples):
        stats.warnings.append("no example ends with a trained EOS token, so the LoRA will not learn to stop; consider --add-eos")
    if not examples:
        raise LorakitError(
            f"no row of {spec.dataset} has a token to train on",
            "raise --cutoff-len or check --train-only-after",
        )
    return examples, stats


def _raw_examples(tokenizer, spec: DataSpec, prefix_ids, eos_id) -> tuple[list[Example], DataStats]:
    from lorakit.training.raw_text import chunk_raw_text

    chunks, raw = chunk_raw_text(
        tokenizer,
        spec.raw_text,
        cutoff_len=spec.cutoff_len,
        overlap_len=spec.overlap_len,
        newline_favor_len=spec.newline_favor_len,
        hard_cut=unescape(spec.hard_cut_string) or "",
        min_chars=spec.min_chars,
        prefix_ids=prefix_ids,
        eos_id=eos_id if spec.add_eos else None,
    )
    stats = DataStats(
        kind="raw", format_name="raw", files=raw.files, blocks_kept=raw.blocks_kept,
        blocks_dropped=raw.blocks_dropped, eos_added=raw.eos_added, prompt_format=prompt_format_record(spec),
    )
    examples = []
    for chunk in chunks:
        labels = [IGNORE_INDEX] * len(prefix_ids) + chunk.input_ids[len(prefix_ids) :]
        source = f"{chunk.source} block {chunk.block + 1}"
        examples.append(Example(chunk.input_ids, labels, chunk.text, source, (chunk.start, chunk.end)))
    return examples, stats
