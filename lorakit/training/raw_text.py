"""Raw-text chunking, as text-generation-webui's classic trainer did it, without losing text.

1. Read a ``.txt`` file, or every ``.txt`` in a folder in natural sort order (``2.txt`` before
   ``10.txt``); a file boundary acts like a hard cut, so no chunk spans two files.
2. Split on the hard-cut string (default three newlines); drop blocks whose stripped text is
   empty or at most ``min_chars`` characters long (text-generation-webui's rule: ``<= min_chars``).
   A chunk is a slice of one block, so no chunk can contain the
   hard-cut string (``str.split`` leaves no occurrence inside a piece).
3. Tokenize each block once; with ``add_eos`` an EOS token closes the block (i.e. sits at each hard
   cut). Cut windows of ``cutoff_len`` tokens (BOS included where the tokenizer adds one), each next
   window starting ``overlap_len`` tokens before the previous one ended.
4. Move window edges to a line start when one lies within ``newline_favor_len`` characters: a
   window's end moves back to just after a newline, the next window's start moves (either way) to
   the line start nearest to where it would have started, but never past the previous window's
   end. Unlike the webui's cut (which dropped the opening of every chunk), windows stay contiguous or
   overlapping, so every character of every kept block is in at least one chunk.

Chunks are slices of the block's own token sequence, so a chunk never exceeds ``cutoff_len`` tokens
and its ``text`` is exactly the characters its tokens cover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.training.masking import encode_with_ranges


@dataclass
class Chunk:
    input_ids: list[int]
    text: str
    source: str  # file name, for messages and --dry-run
    block: int  # index of the block inside its file
    start: int  # character offsets into the block
    end: int


@dataclass
class RawStats:
    files: int = 0
    blocks_kept: int = 0
    blocks_dropped: int = 0
    eos_added: int = 0
    tokens: int = 0  # tokens of all kept blocks (EOS included, BOS not)


def natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def raw_text_files(path: Path) -> list[Path]:
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted((item for item in path.iterdir() if item.is_file() and item.suffix.lower() == ".txt"), key=natural_key)
        if not files:
            raise LorakitError(f"raw-text folder {path} has no .txt files")
        return files
    if path.is_file():
        return [path]
    raise LorakitError(f"raw-text file {path} not found", "pass a .txt file or a folder of .txt files")


def read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise LorakitError(f"raw-text file {path} is not UTF-8 (byte {error.start})", "convert it to UTF-8") from None
    except OSError as error:
        raise LorakitError(f"cannot read raw-text file {path}: {error.strerror}") from None
    return text.replace("\r\n", "\n")


def split_blocks(text: str, hard_cut: str, min_chars: int) -> tuple[list[str], int]:
    """Blocks between hard cuts that are long enough to keep, and how many were dropped."""
    pieces = text.split(hard_cut) if hard_cut else [text]
    kept = [piece for piece in pieces if piece.strip() and len(piece.strip()) > min_chars]  # webui: dropped when <= min chars
    dropped = sum(1 for piece in pieces if piece.strip()) - len(kept)
    return kept, dropped


def line_start_tokens(block: str, starts: list[int], ids_count: int) -> list[bool]:
    """``True`` at token ``j`` when it begins a line: the text before it ends in a newline
    (possibly followed by indentation merged into the same token)."""
    flags = [False] * (ids_count + 1)
    for j in range(1, ids_count):
        before = block[starts[j - 1] : starts[j]]
        if "\n" in before and not before[before.rindex("\n") + 1 :].strip():
            flags[j] = True
    return flags


def window_bounds(starts: list[int], text_len: int, count: int, size: int, overlap: int, favor: int, at_line: list[bool]) -> list[tuple[int, int]]:
    """Token windows ``[a, b)`` over ``count`` tokens; see the module docstring for the rules."""

    def char(j: int) -> int:
        return starts[j] if j < count else text_len

    windows, a = [], 0
    while True:
        b = min(a + size, count)
        if b < count and favor > 0:
            # latest line start before the nominal end, close enough, leaving the next window progress
            for j in range(b - 1, a + overlap, -1):
                if char(b) - char(j) > favor:
                    break
                if at_line[j]:
                    b = j
                    break
        windows.append((a, b))
        if b >= count:
            return windows
        nominal = max(b - overlap, a + 1)
        a = nominal
        if favor > 0:
            best = None
            for j in range(a + 1, b + 1):  # candidates on both sides of the nominal start, never after b
                distance = abs(char(j) - char(nominal))
                if distance > favor and j > nominal:
                    break
                if at_line[j] and distance <= favor and (best is None or distance < best[0]):
                    best = (distance, j)
            a = best[1] if best else nominal


def chunk_block(tokenizer, block: str, size: int, overlap: int, favor: int, eos_id: int | None) -> tuple[list[tuple[list[int], int, int]], int]:
    """Windows over one block: ``([(ids, char_start, char_end)], token_count)``."""
    ids, ranges = encode_with_ranges(tokenizer, block)
    starts = [s for s, _ in ranges]
    if eos_id is not None:
        ids = ids + [eos_id]
        starts = starts + [len(block)]
    count = len(ids)
    # a window may not start at the closing EOS (it would hold nothing to learn from)
    at_line = line_start_tokens(block, starts, len(ranges)) + [False] * (count - len(ranges))
    chunks = []
    for a, b in window_bounds(starts, len(block), count, size, overlap, favor, at_line):
        char_end = starts[b] if b < count else len(block)
        chunks.append((ids[a:b], starts[a] if a < count else len(block), char_end))
    return chunks, count


def chunk_raw_text(
    tokenizer,
    path: Path,
    cutoff_len: int,
    overlap_len: int,
    newline_favor_len: int,
    hard_cut: str,
    min_chars: int,
    prefix_ids: list[int],
    eos_id: int | None,
) -> tuple[list[Chunk], RawStats]:
    size = cutoff_len - len(prefix_ids)
    if size <= overlap_len:
        raise LorakitError(f"cutoff length {cutoff_len} leaves no room past the overlap ({overlap_len}) and BOS")
    stats, chunks = RawStats(), []
    for file in raw_text_files(path):
        stats.files += 1
        blocks, dropped = split_blocks(read_text(file), hard_cut, min_chars)
        stats.blocks_dropped += dropped
        for block_index, block in enumerate(blocks):
            stats.blocks_kept += 1
            stats.eos_added += eos_id is not None
            windows, count = chunk_block(tokenizer, block, size, overlap_len, newline_favor_len, eos_id)
            stats.tokens += count
            for ids, start, end in windows:
                chunks.append(Chunk(list(prefix_ids) + ids, block[start:end], file.name, block_index, start, end))
    if not stats.blocks_kept:
        raise LorakitError(
            f"raw text {path} has no block left to train on (all empty or at most --min-chars {min_chars} characters)",
            "lower --min-chars or check --hard-cut-string",
        )
    if stats.tokens < size:
        raise LorakitError(
            f"raw text {path} is {stats.tokens} tokens, shorter than one chunk of --cutoff-len {cutoff_len}",
            "add more text or lower --cutoff-len",
        )
    return chunks, stats
