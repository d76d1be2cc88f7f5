"""Tokenize a dataset into documents: token ids, plus labels when only some tokens are scored.

Plain text is tokenized the way the transformers documentation does it (``tokenizer(text)``, the
tokenizer's own special tokens included). Formatted rows go through the training data API
(:func:`lorakit.training.dataset.load_examples`), so evaluation masks tokens with the very code
training uses. What is scored is the response: chat rows score their assistant turns (as chat
training trains them); format-file rows score what follows the format's response marker, the
literal text every template puts just before its last placeholder (``\n\n### Response:\n`` for
alpaca, ``<|im_start|>assistant\n`` after the user turn for chatml), passed to the training API as
``train_only_after``. ``--train-only-after TEXT`` overrides the marker; ``--train-only-after ""``
scores whole rows. Rows are never cut: a long row is scored with strided windows like any text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lorakit.errors import LorakitError
from lorakit.evaluation.sources import (
    DatasetRef,
    empty_dataset_error,
    first_row_lacks_field,
    read_documents,
    read_rows,
)

NO_CUTOFF = 1 << 30  # the training API's cutoff_len: rows are never truncated for evaluation


@dataclass
class TokenDocument:
    name: str
    ids: Any  # 1-D torch int64 tensor
    labels: Any = None  # same shape, -100 where the token is context only; None = every token scored


@dataclass
class TokenizedDataset:
    documents: list[TokenDocument]
    kind: str  # "text" or "format:<name>"
    skipped: int = 0  # documents with fewer than two tokens (nothing to predict)
    notes: list[str] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(int(doc.ids.numel()) for doc in self.documents)


def tokenize_dataset(ref: DatasetRef, tokenizer) -> TokenizedDataset:
    if ref.kind == "format":
        return _formatted(ref, tokenizer, ref.format)
    row = first_row_lacks_field(ref)
    if row is not None and _formatter_name(row):
        # Rows without the default 'text' field that a formatter recognises (Alpaca, chat): score
        # them like training would, and say so, rather than failing on a field the user never named.
        tokenized = _formatted(ref, tokenizer, None)
        tokenized.notes.append(
            f"rows have no '{ref.text_field}' field: scored with the '{tokenized.kind.split(':', 1)[1]}' format, "
            "response tokens only (pass --text-field NAME to score a field as plain text)"
        )
        return tokenized
    return _plain(ref, tokenizer)


def _plain(ref: DatasetRef, tokenizer) -> TokenizedDataset:
    import torch

    texts = read_documents(ref)
    documents, skipped = [], 0
    for text in texts:
        if not text.text.strip():
            skipped += 1
            continue
        ids = tokenizer(text.text)["input_ids"]
        if len(ids) < 2:
            skipped += 1
            continue
        documents.append(TokenDocument(text.name, torch.tensor(ids, dtype=torch.long)))
    if not documents:
        raise empty_dataset_error(ref)
    tokenized = TokenizedDataset(documents, "text", skipped)
    if skipped:
        what = "rows" if ref.kind == "rows" else "files"
        tokenized.notes.append(f"{skipped} of {len(texts)} {what} had fewer than 2 tokens (nothing to predict) and were skipped")
    return tokenized


def response_marker(fmt: str | None, first_row) -> tuple[bool, str | None]:
    """(is a format file, the literal text all its templates put right before their last placeholder)."""
    import os

    from lorakit.training.formats import PLACEHOLDER
    from lorakit.training.formatter_choice import resolve_formatter

    templates = getattr(resolve_formatter(fmt, first_row if isinstance(first_row, dict) else {}), "templates", None)
    if not templates:
        return False, None  # not a format file (e.g. chat rows): the formatter already marks the response
    segments = []
    for template in templates.values():
        matches = list(PLACEHOLDER.finditer(template))
        if not matches:
            return True, None
        start = matches[-2].end() if len(matches) > 1 else 0
        segments.append(template[start : matches[-1].start()][::-1])
    marker = os.path.commonprefix(segments)[::-1]
    return True, (marker if marker.strip() else None)


def _formatter_name(row: dict) -> str | None:
    from lorakit.training.formatter_choice import resolve_formatter

    try:
        return resolve_formatter(None, row).name
    except LorakitError:
        return None


def _formatted(ref: DatasetRef, tokenizer, fmt: str | None) -> TokenizedDataset:
    import torch

    from lorakit.training.dataset import DataSpec, load_examples

    marker = ref.score_after
    notes = []
    if marker is None:
        rows = read_rows(ref.path)
        if not rows:
            raise empty_dataset_error(ref)
        format_file, marker = response_marker(fmt, rows[0][1])
        if format_file and marker is None:
            notes.append("could not find the response marker of this format: whole rows are scored (pass --train-only-after TEXT)")
    spec = DataSpec(dataset=ref.path, format=fmt, cutoff_len=NO_CUTOFF, add_eos=ref.add_eos, train_only_after=marker or None)
    examples, stats = load_examples(tokenizer, spec)
    documents = [
        TokenDocument(example.source or f"example {number}", torch.tensor(example.input_ids, dtype=torch.long), torch.tensor(example.labels, dtype=torch.long))
        for number, example in enumerate(examples, start=1)
        if len(example.input_ids) >= 2
    ]
    if not documents:
        raise empty_dataset_error(ref)
    tokenized = TokenizedDataset(documents, f"format:{stats.format_name or fmt or 'auto'}", len(examples) - len(documents))
    tokenized.notes.extend(notes + list(stats.warnings))
    return tokenized

