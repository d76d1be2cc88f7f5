"""--dry-run output: marked samples and counts on stderr; --dry-run --json lines on stdout."""

from __future__ import annotations

import io
import json

from data_helpers import tiny_tokenizer, write_rows  # noqa: F401
from rich.console import Console

from lorakit.training.dataset import DataSpec, load_examples, sample_dataset_path
from lorakit.training.dry_run import pick_samples, print_dry_run, write_dry_run_json


def test_dry_run_marks_trained_text_and_counts(tiny_tokenizer):
    spec = DataSpec(dataset=sample_dataset_path(), format="alpaca", train_only_after="### Response:\\n", add_eos=True, cutoff_len=100)
    examples, stats = load_examples(tiny_tokenizer, spec)
    buffer = io.StringIO()
    print_dry_run(examples, stats, tiny_tokenizer, samples=2, console=Console(file=buffer, width=120, force_terminal=False))
    out = buffer.getvalue()
    assert "### Response:\n[[The mayor of Quillhaven is Odalys Penhallow.<|im_end|>]]" in out
    assert f"{stats.min_tokens} / {stats.mean_tokens:.1f} / {stats.max_tokens}" in out
    assert stats.truncated > 0 and f"{stats.truncated} of {stats.rows}" in out
    assert "nothing was trained" in out
    # on a terminal the marks are styles, not brackets
    styled = io.StringIO()
    print_dry_run(examples[:1], stats, tiny_tokenizer, console=Console(file=styled, width=120, force_terminal=True, color_system="truecolor"))
    assert "[[" not in styled.getvalue() and "\x1b[" in styled.getvalue()


def test_dry_run_json_is_every_example_exactly(tiny_tokenizer, tmp_path):
    rows = [{"instruction": "One?", "output": "1"}, {"instruction": "Two?", "input": "x", "output": "2"}]
    examples, _ = load_examples(tiny_tokenizer, DataSpec(dataset=write_rows(tmp_path / "d.json", rows), add_eos=True))
    buffer = io.StringIO()
    write_dry_run_json(examples, buffer)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert len(lines) == 2 and all(set(line) == {"text", "input_ids", "labels"} for line in lines)
    assert [line["input_ids"] for line in lines] == [e.input_ids for e in examples]
    assert [line["labels"] for line in lines] == [e.labels for e in examples]
    assert lines[1]["text"].endswith("### Input:\nx\n\n### Response:\n2")


def test_pick_samples_spreads_over_the_run():
    assert pick_samples(list(range(100)), 3) == [0, 50, 99]
    assert pick_samples(list(range(2)), 3) == [0, 1]
    assert pick_samples([], 3) == []
