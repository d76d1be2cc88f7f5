"""Packing is exact: per-example attention on a packed row equals separate forwards, and the loss
normalisation makes micro-batch size / accumulation irrelevant to the update."""

from __future__ import annotations

import pytest
import torch
from train_helpers import TINY_ARGS, assert_same_adapter


def _examples(tokenizer, texts):
    from lorakit.training.dataset import Example

    out = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        out.append(Example(ids, list(ids), text))
    return out


@pytest.fixture(scope="module")
def tiny_peft(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.training.model_setup import attach_lora
    from lorakit.training.params import TrainParams

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = attach_lora(base, TrainParams(rank=4, dropout=0.0, init_lora_weights="gaussian"))
    model.eval()
    return model, tokenizer


TEXTS = ["Paris is the capital of France.", "The quick brown fox", "To be, or not to be, that is the question. hello world lorakit"]


@pytest.mark.parametrize("per_example", [True, False], ids=["per-example-sdpa", "transformers-packed-mask"])
def test_packed_row_matches_separate_forwards(tiny_peft, per_example):
    from lorakit.training.packed_attention import packed_attention
    from lorakit.training.steps import PackedLoss

    model, tokenizer = tiny_peft
    examples = _examples(tokenizer, TEXTS)
    with torch.no_grad():
        separate = 0.0
        for example in examples:
            ids = torch.tensor([example.input_ids])
            out = model(input_ids=ids, labels=ids, use_cache=False)
            separate += float(out.loss) * (ids.shape[1] - 1)
        if per_example:
            with packed_attention(model.get_base_model(), 64) as on:
                assert on is True
                packed, targets = PackedLoss(model, "cpu", None, per_example_attention=True)(examples)
        else:
            packed, targets = PackedLoss(model, "cpu", None, per_example_attention=False)(examples)
    assert targets == sum(len(e.input_ids) - 1 for e in examples)
    assert float(packed) == pytest.approx(separate, rel=1e-5)


def test_packed_logits_equal_per_example_logits(tiny_peft):
    from lorakit.training.batching import pack
    from lorakit.training.packed_attention import (
        SEGMENTS_KWARG,
        packed_attention,
        segments_of,
    )

    model, tokenizer = tiny_peft
    examples = _examples(tokenizer, TEXTS)
    batch = pack(examples)
    with torch.no_grad(), packed_attention(model.get_base_model(), 64):
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
                       **{SEGMENTS_KWARG: segments_of(len(e.input_ids) for e in examples)}).logits[0]
    start = 0
    with torch.no_grad():
        for example in examples:
            alone = model(input_ids=torch.tensor([example.input_ids]), use_cache=False).logits[0]
            part = packed[start : start + len(example.input_ids)]
            assert torch.allclose(part, alone, atol=1e-5), (part - alone).abs().max()
            start += len(example.input_ids)


def test_micro_batch_size_does_not_change_the_update(run_cli, tiny_model_dir, tiny_dataset, tmp_path):
    """Batch 8 as 1 x 8 and as 4 x 2: same target-token normalisation, same adapter."""
    outputs = []
    for micro in (8, 2):
        out = tmp_path / f"micro{micro}"
        code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--output", str(out),
                               "--batch-size", "8", "--micro-batch-size", str(micro), "--epochs", "1", *TINY_ARGS)
        assert code == 0, err
        outputs.append(out)
    assert_same_adapter(outputs[0], outputs[1], atol=1e-5)


def test_per_example_attention_finds_boundaries_from_position_ids(tiny_peft):
    """A packed forward that does not pass the boundaries (e.g. an evaluation helper) is still exact."""
    from lorakit.training.packed_attention import packed_attention
    from lorakit.training.steps import PackedLoss

    model, tokenizer = tiny_peft
    examples = _examples(tokenizer, TEXTS)
    with torch.no_grad():
        reference, _ = PackedLoss(model, "cpu", None)(examples)
        with packed_attention(model.get_base_model(), 64):
            without_boundaries, _ = PackedLoss(model, "cpu", None, per_example_attention=False)(examples)
    assert float(without_boundaries) == pytest.approx(float(reference), rel=1e-5)
