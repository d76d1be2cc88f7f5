"""Token-level masking: --train-only-after, EOS, truncation, padding that never hides a trained EOS."""

from __future__ import annotations

import json
import random

import pytest
from data_helpers import (  # noqa: F401
    smollm2_tokenizer,
    tiny_tokenizer,
    trained_runs,
    trained_text,
    write_rows,
)
from lorakit_testing import shared_data

from lorakit.errors import LorakitError
from lorakit.training.dataset import (
    DataSpec,
    collate,
    load_examples,
    pack,
    sample_dataset_path,
)
from lorakit.training.masking import IGNORE_INDEX, encode_with_spans, unescape

MARKER = "### Response:\n"


def _alpaca_rows(count):
    rows = json.loads(sample_dataset_path().read_text())
    path = shared_data("alpaca_cleaned_1k.json") if count > len(rows) else None
    if path:
        rows += json.loads(path.read_text())
    return rows[:count]


@pytest.mark.parametrize("which", ["tiny_tokenizer", "smollm2_tokenizer"])
@pytest.mark.parametrize("marker", [MARKER, "### Response:", "### Resp", "Response:\n", "\n\n### Response:\n"])
def test_train_only_after_labels_are_exactly_the_response(request, which, marker, tmp_path):
    tokenizer = request.getfixturevalue(which)
    rows = _alpaca_rows(120)
    data = write_rows(tmp_path / "d.json", rows)
    examples, stats = load_examples(tokenizer, DataSpec(dataset=data, format="alpaca", train_only_after=marker, cutoff_len=4096))
    assert stats.truncated == 0 and stats.count == len(rows)
    for row, example in zip(rows, examples):
        full = example.text
        response = full[full.index(marker) + len(marker):]
        assert response.endswith(row["output"])
        # one contiguous trained run, decoding to exactly the response: no character more or less,
        # even where BPE would merge across the marker's end ("### Resp" cuts inside a word)
        assert trained_runs(tokenizer, example) == [response]
        first_trained = next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)
        assert all(label == IGNORE_INDEX for label in example.labels[:first_trained])


def test_straddling_token_is_split_at_the_boundary(tiny_tokenizer, smollm2_tokenizer):
    for tokenizer in (tiny_tokenizer, smollm2_tokenizer):
        text = "### Response: hello world"
        joint = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        edge = text.index("sponse")  # inside "Response", a single token in both vocabularies
        assert any(s < edge < e for s, e in joint["offset_mapping"]), "the test needs a token across the edge"
        ids, trained, _ = encode_with_spans(tokenizer, text, [(edge, len(text))])
        assert tokenizer.decode([t for t, flag in zip(ids, trained) if flag]) == text[edge:]
        assert tokenizer.decode([t for t, flag in zip(ids, trained) if not flag]) == text[:edge]


def test_random_spans_decode_exactly(tiny_tokenizer, smollm2_tokenizer):
    rng = random.Random(0)
    corpus = " ".join(row["output"] for row in _alpaca_rows(60))
    for tokenizer in (tiny_tokenizer, smollm2_tokenizer):
        for _ in range(40):
            start = rng.randrange(0, len(corpus) - 400)
            text = corpus[start : start + rng.randrange(50, 400)]
            edges = sorted(rng.sample(range(1, len(text)), 4))
            spans = [(edges[0], edges[1]), (edges[2], edges[3])]
            ids, trained, _ = encode_with_spans(tokenizer, text, spans)
            runs, current = [], []
            for token, flag in zip(ids, trained):
                if flag:
                    current.append(token)
                elif current:
                    runs.append(tokenizer.decode(current))
                    current = []
            if current:
                runs.append(tokenizer.decode(current))
            assert runs == [text[a:b] for a, b in spans]
            assert tokenizer.decode(ids) == text


def test_train_only_after_missing_names_the_row(tiny_tokenizer, tmp_path):
    data = write_rows(tmp_path / "d.json", [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}])
    fmt = tmp_path / "f.json"
    fmt.write_text(json.dumps({"instruction,output": "%instruction% => %output%"}))
    (tmp_path / "g.json").write_text(json.dumps({"instruction,output": "%instruction% ANSWER %output%"}))
    with pytest.raises(LorakitError, match="row 1 of .* does not contain the --train-only-after text 'ANSWER'"):
        load_examples(tiny_tokenizer, DataSpec(dataset=data, format=str(fmt), train_only_after="ANSWER"))
    examples, _ = load_examples(tiny_tokenizer, DataSpec(dataset=data, format=str(tmp_path / "g.json"), train_only_after="ANSWER"))
    assert trained_text(tiny_tokenizer, examples[1]) == " d"


def test_escapes_in_flags():
    assert unescape("### Response:\\n") == "### Response:\n"
    assert unescape("\\n\\n\\n") == "\n\n\n" and unescape("a\\\\nb") == "a\\nb" and unescape("tab\\t") == "tab\t"


@pytest.mark.parametrize("which", ["tiny_tokenizer", "smollm2_tokenizer"])
def test_eos_in_labels_only_with_add_eos(request, which):
    tokenizer = request.getfixturevalue(which)
    eos = tokenizer.eos_token_id
    spec = dict(dataset=sample_dataset_path(), format="alpaca", train_only_after=MARKER, cutoff_len=1024)
    with_eos, _ = load_examples(tokenizer, DataSpec(**spec, add_eos=True))
    without, _ = load_examples(tokenizer, DataSpec(**spec))
    for a, b in zip(with_eos, without):
        assert a.input_ids[-1] == eos and a.labels[-1] == eos
        assert a.input_ids[:-1] == b.input_ids and eos not in b.labels
        assert trained_text(tokenizer, a) == trained_text(tokenizer, b) + tokenizer.eos_token


def test_truncated_rows_are_counted_and_lose_their_eos(tiny_tokenizer, tmp_path):
    rows = [{"instruction": "Say a lot.", "output": "word " * 300}, {"instruction": "Say little.", "output": "ok"}]
    data = write_rows(tmp_path / "d.json", rows)
    examples, stats = load_examples(tiny_tokenizer, DataSpec(dataset=data, format="alpaca", cutoff_len=64, add_eos=True))
    assert stats.truncated == 1 and stats.max_tokens == 64
    long, short = examples
    assert len(long.input_ids) == 64 and tiny_tokenizer.eos_token_id not in long.input_ids
    assert tiny_tokenizer.decode(long.input_ids) == long.text  # text is what the tokens cover
    assert short.labels[-1] == tiny_tokenizer.eos_token_id
    # a prompt longer than the cutoff leaves nothing to train: skipped, counted, warned
    rows = [{"instruction": "Say " + "more " * 100, "output": "no"}, {"instruction": "Say little.", "output": "ok"}]
    data = write_rows(tmp_path / "d.json", rows)
    examples, stats = load_examples(tiny_tokenizer, DataSpec(dataset=data, format="alpaca", cutoff_len=64, train_only_after=MARKER))
    assert stats.count == 1 and stats.skipped_untrained == 1 and stats.truncated == 1
    assert "1 of 2 rows had no trained token left" in stats.warnings[0]
    with pytest.raises(LorakitError, match="no row of .* has a token to train on"):
        load_examples(tiny_tokenizer, DataSpec(dataset=data, format="alpaca", cutoff_len=8, train_only_after=MARKER))


def test_collate_keeps_the_trained_eos_when_pad_equals_eos(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # SmolLM2: the case that bites
    examples, _ = load_examples(tokenizer, DataSpec(dataset=sample_dataset_path(), format="alpaca", train_only_after=MARKER, add_eos=True))
    batch = collate(examples[:4], pad_id=tokenizer.pad_token_id)
    lengths = [len(e.input_ids) for e in examples[:4]]
    for row, (example, length) in enumerate(zip(examples[:4], lengths)):
        assert batch["labels"][row, length - 1].item() == tokenizer.eos_token_id  # the real EOS is trained
        assert batch["attention_mask"][row, :length].all() and not batch["attention_mask"][row, length:].any()
        assert (batch["labels"][row, length:] == IGNORE_INDEX).all()
        assert batch["labels"][row, :length].tolist() == example.labels
    assert batch["num_target_tokens"] == sum(sum(1 for l in e.labels[1:] if l != IGNORE_INDEX) for e in examples[:4])
    # the classic collator bug, for contrast: masking by value drops every trained EOS
    naive = batch["input_ids"].clone()
    naive[naive == tokenizer.pad_token_id] = IGNORE_INDEX
    assert not any(naive[row, length - 1].item() == tokenizer.eos_token_id for row, length in enumerate(lengths))


def test_packed_batch_matches_separate_forwards(tiny_model_dir, tiny_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    examples, _ = load_examples(tiny_tokenizer, DataSpec(dataset=sample_dataset_path(), format="alpaca", add_eos=True, cutoff_len=200))
    chosen = examples[:3]
    batch = pack(chosen)
    assert batch["input_ids"].shape[1] == sum(len(e.input_ids) for e in chosen)  # zero padding
    with torch.no_grad():
        inputs = {key: value for key, value in batch.items() if key not in ("labels", "num_target_tokens")}
        packed = model(**inputs).logits[0]
        offset = 0
        for example in chosen:
            alone = model(input_ids=torch.tensor([example.input_ids])).logits[0]
            torch.testing.assert_close(packed[offset : offset + len(example.input_ids)], alone, atol=1e-5, rtol=1e-4)
            assert batch["labels"][0, offset].item() == IGNORE_INDEX  # never trained across examples
            offset += len(example.input_ids)
        # the summed loss over packed targets equals the sum of the separate losses
        loss = torch.nn.functional.cross_entropy(packed[:-1], batch["labels"][0, 1:], ignore_index=IGNORE_INDEX, reduction="sum")
        separate = sum(
            torch.nn.functional.cross_entropy(
                model(input_ids=torch.tensor([e.input_ids])).logits[0, :-1], torch.tensor(e.labels[1:]), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            for e in chosen
        )
    torch.testing.assert_close(loss, separate, atol=1e-3, rtol=1e-5)
    assert batch["num_target_tokens"] == sum(sum(1 for l in e.labels[1:] if l != IGNORE_INDEX) for e in chosen)


def test_tokenizer_that_adds_bos(tmp_path):
    """Llama-style tokenizers put BOS first: it starts every example and every raw chunk, untrained."""
    from lorakit_testing import build_tiny_tokenizer, shared_data
    from tokenizers.processors import TemplateProcessing

    tokenizer = build_tiny_tokenizer()
    bos = tokenizer.bos_token_id
    tokenizer._tokenizer.post_processor = TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)])
    examples, _ = load_examples(tokenizer, DataSpec(dataset=sample_dataset_path(), train_only_after=MARKER, add_eos=True, cutoff_len=1024))
    for example in examples:
        assert example.input_ids[0] == bos and example.labels[0] == IGNORE_INDEX and example.input_ids.count(bos) == 1
        assert trained_text(tokenizer, example) == example.text.split(MARKER, 1)[1] + tokenizer.eos_token
    path = tmp_path / "t.txt"
    path.write_text(shared_data("tinyshakespeare.txt").read_text()[:20_000])
    chunks, _ = load_examples(tokenizer, DataSpec(raw_text=path, cutoff_len=64, overlap_len=16))
    assert all(c.input_ids[0] == bos and c.labels[0] == IGNORE_INDEX and len(c.input_ids) <= 64 for c in chunks)
    assert all(c.labels[1:] == c.input_ids[1:] and tokenizer.decode(c.input_ids[1:]) == c.text for c in chunks)
