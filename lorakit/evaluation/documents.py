"""Tokenize a dataset into documents: token ids, plus labels when only some tokens are scored.

Plain text is tokenized the way the transformers documentation does it (``tokenizer(text)``, the
tokenizer's own special tokens included). Formatted rows go through the training data API
(:func:`lorakit.training.dataset.load_examples`), so evaluation masks exactly what training
trains: the prompt is context, the response is scored. Rows are never cut: a long row is scored
with strided windows like any long text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lorakit.errors import LorakitError
from lorakit.evaluation.sources import DatasetRef, empty_dataset_error, first_row_lacks_field, read_documents

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


def _formatter_name(row: dict) -> str | None:
    from lorakit.training.formatters import resolve_formatter

    try:
        return resolve_formatter(None, row).name
    except LorakitError:
        return None


def _formatted(ref: DatasetRef, tokenizer, fmt: str | None) -> TokenizedDataset:
    import torch

    from lorakit.training.dataset import DataSpec, load_examples

    spec = DataSpec(dataset=ref.path, format=fmt, cutoff_len=NO_CUTOFF, add_eos=ref.add_eos)
    examples, stats = load_examples(tokenizer, spec)
    documents = [
        TokenDocument(example.source or f"example {number}", torch.tensor(example.input_ids, dtype=torch.long), torch.tensor(example.labels, dtype=torch.long))
        for number, example in enumerate(examples, start=1)
        if len(example.input_ids) >= 2
    ]
    if not documents:
        raise empty_dataset_error(ref)
    tokenized = TokenizedDataset(documents, f"format:{stats.format_name or fmt or 'auto'}", len(examples) - len(documents))
    tokenized.notes.extend(stats.warnings)
    return tokenized
