"""Text + trained character spans -> ``input_ids`` and ``labels``, exact at token boundaries.

Masking works on character offsets, never on string search over tokens. The text is tokenized
with an offset mapping; a token belongs to the trained part when its characters do. When BPE
merged characters from both sides of a span edge into one token (``":\\n"`` + ``"The"`` -> one
token), the text is cut at that edge and the two sides are tokenized separately, which is also
how generation sees it (the prompt is tokenized alone, the model then produces the answer's
tokens). So the decoded labels are exactly the trained text, never one character more or less.

``--train-only-after TEXT`` trains only what follows the first occurrence of ``TEXT`` in a row.
With ``--add-eos`` an end-of-sequence token is appended *and trained*; it is never masked because
padding is not found by comparing ids with the pad id (see :mod:`lorakit.training.batching`).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from lorakit.training.formatters import RowError

IGNORE_INDEX = -100
ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\"}


def unescape(value: str | None) -> str | None:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` typed on a command line become the real characters."""
    if value is None:
        return None
    out, index = [], 0
    while index < len(value):
        pair = value[index : index + 2]
        if pair in ESCAPES:
            out.append(ESCAPES[pair])
            index += 2
        else:
            out.append(value[index])
            index += 1
    return "".join(out)


def special_prefix_ids(tokenizer) -> list[int]:
    """Tokens the tokenizer puts before any text on its own (BOS for Llama-style tokenizers)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return list(with_special[:start])
    return []


def encode_with_ranges(tokenizer, text: str, start: int = 0, end: int | None = None) -> tuple[list[int], list[tuple[int, int]]]:
    """Tokenize ``text[start:end]`` (no special tokens added) with contiguous character ranges.

    Offsets are normalised so that ranges tile the text: whitespace an offset mapping trimmed off
    (``trim_offsets``) belongs to the token after it, and a token that shares a character with the
    previous one (a multi-byte character split by byte-level BPE) keeps that character's range.
    """
    end = len(text) if end is None else end
    if end <= start:
        return [], []
    encoding = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
    ids, ranges, previous_end, previous = [], [], start, (start, start)
    for token_id, (s, e) in zip(encoding["input_ids"], encoding["offset_mapping"]):
        s, e = s + start, e + start
        if e <= previous_end:
            current = (s, e) if e > s else previous
        else:
            current = (min(s, previous_end), e)
        ids.append(token_id)
        ranges.append(current)
        previous, previous_end = current, max(previous_end, e)
    return ids, ranges


def _straddled(ranges: list[tuple[int, int]], edges: list[int]) -> set[int]:
    found = set()
    for s, e in ranges:
        index = bisect_right(edges, s)
        while index < len(edges) and edges[index] < e:
            found.add(edges[index])
            index += 1
    return found


def encode_with_spans(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[bool], list[tuple[int, int]]]:
    """Token ids, a trained flag per token, and each token's character range (no special tokens)."""
    edges = sorted({edge for span in spans for edge in span if 0 < edge < len(text)})
    cuts: set[int] = set()
    while True:
        bounds = [0, *sorted(cuts), len(text)]
        ids, ranges = [], []
        for piece_start, piece_end in zip(bounds, bounds[1:]):
            piece_ids, piece_ranges = encode_with_ranges(tokenizer, text, piece_start, piece_end)
            ids += piece_ids
            ranges += piece_ranges
        new_cuts = _straddled(ranges, edges) - cuts
        if not new_cuts:  # every span edge is now a token boundary
            break
        cuts |= new_cuts
    inside = bytearray(len(text))
    for span_start, span_end in spans:
        inside[span_start:span_end] = b"\x01" * max(0, span_end - span_start)
    trained = [bool(inside[s]) if s < len(text) else False for s, _ in ranges]
    return ids, trained, ranges


def spans_after_marker(text: str, spans: list[tuple[int, int]], marker: str) -> list[tuple[int, int]]:
    """Keep only what lies after the first occurrence of ``marker`` (the marker itself is masked)."""
    index = text.find(marker)
    if index < 0:
        shown = marker if len(marker) <= 40 else marker[:37] + "..."
        raise RowError(f"does not contain the --train-only-after text {shown!r}")
    boundary = index + len(marker)
    return [(max(start, boundary), end) for start, end in spans if end > boundary]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    text: str  # the text the tokens cover (cut where truncation cut the tokens)
    truncated: bool
    full_length: int  # tokens before truncation

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def encode_example(
    tokenizer,
    text: str,
    spans: list[tuple[int, int]],
    cutoff_len: int,
    prefix_ids: list[int],
    eos_id: int | None,
    add_eos: bool,
) -> Encoded:
    """One formatted or chat example: prefix tokens + text tokens (+ trained EOS), cut at ``cutoff_len``."""
    ids, trained, ranges = encode_with_spans(tokenizer, text, spans)
    input_ids = list(prefix_ids) + ids
    labels = [IGNORE_INDEX] * len(prefix_ids) + [token if flag else IGNORE_INDEX for token, flag in zip(ids, trained)]
    ends = [0] * len(prefix_ids) + [e for _, e in ranges]
    last_trained = next((label for label in reversed(labels) if label != IGNORE_INDEX), None)
    if add_eos and eos_id is not None and last_trained != eos_id:
        input_ids.append(eos_id)
        labels.append(eos_id)
        ends.append(len(text))
    full_length = len(input_ids)
    truncated = full_length > cutoff_len
    if truncated:  # an example cut short keeps no EOS: it must not teach stopping mid-answer
        input_ids, labels, ends = input_ids[:cutoff_len], labels[:cutoff_len], ends[:cutoff_len]
    covered = text[: ends[-1]] if truncated and ends else text
    return Encoded(input_ids, labels, covered, truncated, full_length)
