"""A LoRA trained (with PEFT, a few steps) on a text lowers that text's perplexity, and the table says so."""

import json

from eval_helpers import train_lora_on_text

TEXT = (
    "The lighthouse keeper of Varnholm counted seven gulls every morning and wrote the number in a blue ledger. "
    "When the fog came in from the north, he lit the lamp early and sang the old song about the copper boat.\n"
) * 6


def test_trained_lora_lowers_the_perplexity_of_its_text(run_cli, tiny_model_dir, tmp_path):
    text_file = tmp_path / "story.txt"
    text_file.write_text(TEXT)
    adapter = train_lora_on_text(tiny_model_dir, TEXT, tmp_path / "story-lora", steps=30, lr=1e-2)

    args = [str(tiny_model_dir), "--lora", str(adapter), "--dataset", str(text_file), "--max-length", "64", "--stride", "32"]
    code, out, err = run_cli("eval", *args, "--compare", "base,story-lora,story-lora:0.5")
    assert code == 0, err
    table = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert set(table) == {"base", "story-lora", "story-lora:0.5"}
    assert "(reference)" in table["base"] and "(-" in table["story-lora"]  # a negative delta, in percent

    code, out, _ = run_cli("eval", *args, "--compare", "base,story-lora,story-lora:0.5", "--json")
    base, trained, half = json.loads(out)
    assert trained["perplexity"] < 0.85 * base["perplexity"]  # measured: 527 -> 384 on the random tiny model
    assert trained["perplexity"] < half["perplexity"] < base["perplexity"]
    assert trained["delta_perplexity"] < 0 and trained["tokens"] == base["tokens"] == half["tokens"]
