"""Raw-text chunking: hard cuts, min chars, EOS at cuts, overlapping windows, newline edges, no lost text."""

from __future__ import annotations

import pytest
from data_helpers import smollm2_tokenizer, tiny_tokenizer  # noqa: F401
from lorakit_testing import shared_data

from lorakit.errors import LorakitError, UsageError
from lorakit.training.dataset import DataSpec, load_examples
from lorakit.training.raw_text import split_blocks


def _check_chunks(tokenizer, text, examples, spec, hard_cut="\n\n\n"):
    """Every property the issue asks for, on every chunk."""
    blocks, _ = split_blocks(text, hard_cut, spec.min_chars)
    coverage = [bytearray(len(block)) for block in blocks]
    for example in examples:
        assert len(example.input_ids) <= spec.cutoff_len
        assert hard_cut not in example.text
        assert example.labels == example.input_ids  # raw text trains every token
        body = [t for t in example.input_ids if t != tokenizer.eos_token_id]
        assert tokenizer.decode(body) == example.text  # the text is exactly what the tokens hold
        index = int(example.source.rsplit(" ", 1)[1]) - 1
        start, end = example.char_span
        assert blocks[index][start:end] == example.text
        coverage[index][start:end] = b"\x01" * (end - start)
    for block, covered in zip(blocks, coverage):
        assert all(covered), f"characters lost: {sum(1 for c in covered if not c)} of {len(block)}"
    return blocks


@pytest.mark.parametrize("overlap, favor, size", [(128, 128, None), (0, 64, 200_000), (32, 0, 200_000)])
def test_tinyshakespeare_every_character_lands_in_a_chunk(tiny_tokenizer, tmp_path, overlap, favor, size):
    path = shared_data("tinyshakespeare.txt")  # the whole file with the defaults, a slice otherwise
    if size:
        path = tmp_path / "slice.txt"
        path.write_text(shared_data("tinyshakespeare.txt").read_text()[:size] + "\n\n\n\nTHE END.\n")
    text = path.read_text()
    spec = DataSpec(raw_text=path, cutoff_len=256, overlap_len=overlap, newline_favor_len=favor, add_eos=True)
    examples, stats = load_examples(tiny_tokenizer, spec)
    blocks = _check_chunks(tiny_tokenizer, text, examples, spec)
    assert stats.blocks_kept == len(blocks) and stats.eos_added == len(blocks)
    # EOS closes each block: exactly one per block, at the end of the block's last chunk
    closing = [e for e in examples if tiny_tokenizer.eos_token_id in e.input_ids]
    assert len(closing) == len(blocks) and all(e.input_ids[-1] == tiny_tokenizer.eos_token_id for e in closing)
    if favor:
        # edges sit at line starts wherever a newline was close enough (Shakespeare has short lines)
        inner = [e for e in examples if tiny_tokenizer.eos_token_id not in e.input_ids]
        assert sum(e.text.endswith("\n") for e in inner) / len(inner) > 0.95
        assert sum(e.text.startswith(("\n", " ")) or e.text[:1].isupper() for e in examples) / len(examples) > 0.9


def test_smollm2_chunks_on_real_text(smollm2_tokenizer, tmp_path):
    path = tmp_path / "part.txt"
    path.write_text(shared_data("tinyshakespeare.txt").read_text()[:150_000])
    spec = DataSpec(raw_text=path, cutoff_len=200, overlap_len=50, newline_favor_len=100)
    examples, _ = load_examples(smollm2_tokenizer, spec)
    _check_chunks(smollm2_tokenizer, path.read_text(), examples, spec)


def test_hard_cuts_min_chars_and_eos(tiny_tokenizer, tmp_path):
    blocks = ["First part about the fox.\nIt jumps over the dog.\n" * 6, "tiny", "Second part: to be or not to be.\n" * 8]
    path = tmp_path / "text.txt"
    path.write_text("\n\n\n".join(blocks) + "\n\n\n\n\n\n")
    spec = DataSpec(raw_text=path, cutoff_len=48, overlap_len=16, newline_favor_len=40, min_chars=10, add_eos=True)
    examples, stats = load_examples(tiny_tokenizer, spec)
    assert stats.blocks_kept == 2 and stats.blocks_dropped == 1 and stats.eos_added == 2
    assert not any("tiny" in example.text for example in examples)
    _check_chunks(tiny_tokenizer, path.read_text(), examples, spec)
    # a custom hard cut, typed with escapes as on a command line
    path.write_text("one one one one one one one one\\n---\\ntwo two two two two two two".replace("\\n", "\n"))
    examples, stats = load_examples(tiny_tokenizer, DataSpec(raw_text=path, cutoff_len=8, overlap_len=2, hard_cut_string="\\n---\\n"))
    assert stats.blocks_kept == 2 and not any("---" in example.text for example in examples)


def test_folder_in_natural_order_and_no_chunk_spans_files(tiny_tokenizer, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for number in (10, 2, 1):
        (folder / f"part{number}.txt").write_text(f"This is file number {number}.\n" * 12)
    (folder / "notes.md").write_text("ignored")
    examples, stats = load_examples(tiny_tokenizer, DataSpec(raw_text=folder, cutoff_len=64, overlap_len=8))
    assert stats.files == 3
    order = [example.source.split()[0] for example in examples]
    assert order == sorted(order, key=lambda name: int(name[4:-4]))
    for example in examples:
        numbers = {word for word in example.text.split() if word.rstrip(".").isdigit()}
        assert len(numbers) <= 1


def test_raw_text_refusals(tiny_tokenizer, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Short text.\n" * 3)
    with pytest.raises(UsageError, match=r"--cutoff-len \(64\) must be greater than --overlap-len \(64\)"):
        load_examples(tiny_tokenizer, DataSpec(raw_text=path, cutoff_len=64, overlap_len=64))
    with pytest.raises(LorakitError, match="shorter than one chunk of --cutoff-len 256"):
        load_examples(tiny_tokenizer, DataSpec(raw_text=path))
    with pytest.raises(LorakitError, match="no block left"):
        load_examples(tiny_tokenizer, DataSpec(raw_text=path, cutoff_len=8, overlap_len=2, min_chars=1000))
    with pytest.raises(UsageError, match="not to --raw-text"):
        load_examples(tiny_tokenizer, DataSpec(raw_text=path, cutoff_len=8, overlap_len=2, train_only_after="x"))
    with pytest.raises(UsageError, match="exactly one of --dataset and --raw-text"):
        load_examples(tiny_tokenizer, DataSpec(raw_text=path, dataset=path))
    with pytest.raises(UsageError, match="exactly one"):
        load_examples(tiny_tokenizer, DataSpec())
    with pytest.raises(LorakitError, match="not found"):
        load_examples(tiny_tokenizer, DataSpec(raw_text=tmp_path / "missing.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LorakitError, match="has no .txt files"):
        load_examples(tiny_tokenizer, DataSpec(raw_text=tmp_path / "empty"))
