"""The proof on the real SmolLM2-135M: lorakit's perplexity equals a plain transformers
implementation of the documented strided method (relative difference < 1e-5)."""

import json
import math

import pytest
from eval_helpers import documented_perplexity, relative_difference
from lorakit_testing import shared_data

pytestmark = pytest.mark.slow


def test_smollm2_perplexity_equals_the_documented_loop(run_cli, smollm2_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = shared_data("wikitext2_test.raw.txt").read_text(encoding="utf-8")[:1000]
    sample = tmp_path / "wikitext-slice.txt"
    sample.write_text(text, encoding="utf-8")
    code, out, err = run_cli("eval", str(smollm2_dir), "--dataset", str(sample), "--max-length", "128", "--stride", "48", "--json")
    assert code == 0, err
    (row,) = json.loads(out)

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    input_ids = tokenizer(text, return_tensors="pt").input_ids
    mean_nll, tokens = documented_perplexity(model, input_ids, max_length=128, stride=48)

    assert row["tokens"] == tokens == input_ids.size(1) - 1
    assert relative_difference(row["perplexity"], math.exp(mean_nll)) < 1e-5
    assert 5 < row["perplexity"] < 100  # a 135M instruct model on WikiText: plausible, not garbage
