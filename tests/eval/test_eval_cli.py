"""``lorakit eval`` on the tiny model through the real CLI error boundary, checked against
independent references: the documented loop in plain transformers, PEFT for the LoRAs."""

import json
import math
import subprocess
import sys
from importlib import resources

import pytest
from eval_helpers import (
    documented_perplexity,
    one_error_line,
    relative_difference,
    scaled_adapter_copy,
)

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and the river that "
    "crosses it is the Seine. To be, or not to be, that is the question. Hello world from lorakit adapters.\n"
)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(PARAGRAPH * 5)
    return path


def _json(run_cli, *args):
    code, out, err = run_cli("eval", *args, "--json")
    assert code == 0, err
    return json.loads(out), err


def _reference(model_dir, text, max_length, stride, adapter=None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    return documented_perplexity(model, tokenizer(text, return_tensors="pt").input_ids, max_length, stride)


def test_compare_equals_the_documented_loop_and_peft(run_cli, tiny_model_dir, tiny_adapter_dir, text_file, tmp_path):
    rows, err = _json(
        run_cli, str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--dataset", str(text_file),
        "--max-length", "64", "--stride", "24", "--compare", "base,tiny-lora,tiny-lora:0.5", "--batch-size", "3",
    )
    assert [row["configuration"] for row in rows] == ["base", "tiny-lora", "tiny-lora:0.5"]
    half = scaled_adapter_copy(tiny_adapter_dir, tmp_path / "half", 0.5)
    text = text_file.read_text()
    for row, adapter in zip(rows, (None, tiny_adapter_dir, half)):
        mean_nll, tokens = _reference(tiny_model_dir, text, 64, 24, adapter)
        assert row["tokens"] == tokens
        assert relative_difference(row["perplexity"], math.exp(mean_nll)) < 1e-5
    assert rows[0]["delta_perplexity"] == 0.0
    assert rows[1]["delta_perplexity"] == pytest.approx(rows[1]["perplexity"] - rows[0]["perplexity"])
    assert rows[1]["loras"][0]["weight"] == 1.0 and rows[2]["loras"][0]["weight"] == 0.5
    assert len({row["loras"][0]["hash"] for row in rows[1:]}) == 1
    assert "Scoring" in err and "windows" in err  # progress and summary on stderr, never stdout


def test_literal_documented_count_agrees_without_overlap(run_cli, tiny_model_dir, text_file):
    # With stride == max length the documentation's `num_valid_tokens - batch_size` is the exact count.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows, _ = _json(run_cli, str(tiny_model_dir), "--dataset", str(text_file), "--max-length", "48", "--stride", "48")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = AutoTokenizer.from_pretrained(tiny_model_dir)(text_file.read_text(), return_tensors="pt").input_ids
    mean_nll, tokens = documented_perplexity(model, ids, 48, 48, literal_count=True)
    assert rows[0]["tokens"] == tokens and relative_difference(rows[0]["perplexity"], math.exp(mean_nll)) < 1e-5


def test_identical_request_comes_from_the_cache_and_the_log_keeps_every_result(run_cli, tiny_model_dir, tiny_adapter_dir, text_file):
    args = [str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--dataset", str(text_file), "--max-length", "32", "--compare", "base,tiny-lora"]
    code, out, err = run_cli("eval", *args, "--comment", "first run")
    assert code == 0, err
    assert "Loading" in err and "delta vs base" in out and "delta vs base" not in err  # results on stdout, progress on stderr
    code, out, err = run_cli("eval", *args)
    assert code == 0 and "Loading" not in err and "2 of 2 result(s) come from the cache" in err and "(cached)" in out
    rows, err = _json(run_cli, *args, "--compare", "base,tiny-lora,tiny-lora:0.5")
    assert [row["cached"] for row in rows] == [True, True, False] and "1 configuration(s)" in err
    rows_again, _ = _json(run_cli, *args, "--no-cache")
    assert rows_again[1]["perplexity"] == pytest.approx(rows[1]["perplexity"], rel=1e-9) and not rows_again[1]["cached"]

    history, _ = _json(run_cli, "--history")
    assert [h["configuration"] for h in history] == ["base", "tiny-lora", "tiny-lora:0.5", "base", "tiny-lora"]
    first = history[0]
    assert first["comment"] == "first run" and first["max_length"] == "32" and first["stride"] == "16"
    assert first["model"] == str(tiny_model_dir) and first["dataset"] == str(text_file) and len(first["dataset_hash"]) == 16
    assert history[1]["loras"] == f"{tiny_adapter_dir}:1" and len(history[1]["adapter_hash"]) == 16
    code, out, err = run_cli("eval", "--history")
    assert code == 0 and "Evaluations logged in" in out and "tiny-lora" in out  # a table on stdout


def test_changed_adapter_content_is_not_served_from_the_cache(run_cli, tiny_model_dir, tiny_adapter_dir, text_file, tmp_path):
    import shutil

    adapter = tmp_path / "changing-lora"
    shutil.copytree(tiny_adapter_dir, adapter)
    args = [str(tiny_model_dir), "--lora", str(adapter), "--dataset", str(text_file), "--max-length", "32"]
    before, _ = _json(run_cli, *args)
    shutil.copy(scaled_adapter_copy(tiny_adapter_dir, tmp_path / "double", 2.0) / "adapter_config.json", adapter / "adapter_config.json")
    after, _ = _json(run_cli, *args)
    assert not after[0]["cached"] and after[0]["perplexity"] != before[0]["perplexity"]


@pytest.mark.parametrize(
    "case, extra, expected",
    [
        ("empty", [], "is empty: it has no text to score"),
        ("blank-rows", [], "is empty: it has no rows to score"),
        ("short", ["--max-length", "512"], "fewer than one window of --max-length 512; pass --max-length"),
        ("text", ["--max-length", "16", "--stride", "32"], "--stride (32) is larger than --max-length (16)"),
        ("text", ["--stride", "2000"], "--stride (2000) is larger than --max-length (512)"),
        ("rows", ["--text-field", "body"], "line 1 of"),
        ("rows", [], "has no field 'text' (its fields: title)"),
        ("text", ["--max-length", "4096"], "exceeds the model's context of 512 tokens"),
    ],
)
def test_bad_input_gets_one_clear_line(run_cli, tiny_model_dir, tmp_path, case, extra, expected):
    files = {
        "empty": ("empty.txt", "  \n\n"),
        "blank-rows": ("blank.jsonl", "\n\n"),
        "short": ("short.txt", "Paris is the capital of France."),
        "text": ("text.txt", PARAGRAPH * 3),
        "rows": ("rows.jsonl", json.dumps({"title": "no text here"}) + "\n"),
    }
    name, content = files[case]
    (tmp_path / name).write_text(content)
    code, out, err = run_cli("eval", str(tiny_model_dir), "--dataset", str(tmp_path / name), *extra)
    assert code != 0 and out == ""
    assert expected in one_error_line(err)
    assert "Loading" not in err  # refused before the model was loaded


def test_formatted_rows_score_only_the_responses(run_cli, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [
        {"instruction": "Name the capital of France.", "output": "Paris is the capital of France."},
        {"instruction": "Greet someone.", "input": "the world", "output": "Hello world, and hello to lorakit adapters."},
    ] * 3
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    result, _ = _json(run_cli, str(tiny_model_dir), "--dataset", str(path), "--format", "alpaca", "--max-length", "64", "--stride", "32")

    # Independent: prompt and response tokenized apart (how generation sees them), prompt masked.
    template = json.loads((resources.files("lorakit") / "data" / "formats" / "alpaca.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    nll, tokens = 0.0, 0
    for row in rows:
        keys = ",".join(key for key in ("instruction", "input", "output") if key in row)
        full = template[keys]
        for key, value in row.items():
            full = full.replace(f"%{key}%", value)
        prompt = full[: full.index("### Response:\n") + len("### Response:\n")]
        prompt_ids = tokenizer(prompt)["input_ids"]
        response_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + response_ids])
        labels = torch.tensor([[-100] * len(prompt_ids) + response_ids])
        mean, count = documented_perplexity(model, ids, 64, 32, labels=labels)
        nll, tokens = nll + mean * count, tokens + count
    assert result[0]["tokens"] == tokens == sum(len(tokenizer(r["output"], add_special_tokens=False)["input_ids"]) for r in rows)
    assert relative_difference(result[0]["perplexity"], math.exp(nll / tokens)) < 1e-5


def test_generic_forward_logits_path_and_batching_give_the_same_numbers(tiny_model_dir, tiny_adapter_dir, text_file):
    from lorakit.evaluation.runner import EvalRequest, run_eval

    results = []
    for generic, batch in ((False, 1), (True, 7)):  # the fast path one window at a time vs forward_logits batched
        request = EvalRequest(
            dataset=str(text_file), model=str(tiny_model_dir), loras=(str(tiny_adapter_dir),), compare="base,tiny-lora:0.7",
            max_length=40, stride=13, batch_size=batch, use_cache=False, generic=generic,
        )
        results.append([row["mean_nll"] for row in run_eval(request)])
    assert results[1] == pytest.approx(results[0], rel=1e-6)


def test_a_real_subprocess_prints_json_on_stdout_only(tiny_model_dir, text_file, lorakit_home):
    import os

    env = {**os.environ, "LORAKIT_HOME": str(lorakit_home)}
    command = [sys.executable, "-m", "lorakit", "eval", str(tiny_model_dir), "--dataset", str(text_file), "--max-length", "64", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows[0]["configuration"] == "base" and rows[0]["perplexity"] > 1 and rows[0]["stride"] == 32
    assert (lorakit_home / "evaluations.csv").read_text().count("\n") == 2  # header + one result


def test_memory_is_bounded_by_the_batch_not_the_text(tiny_model_dir, tmp_path):
    # A long text: every forward pass still holds at most `batch` windows of max_length tokens,
    # and the fast path keeps only the logits that predict scored tokens (stride + 1 per window).
    import torch

    from lorakit.evaluation.documents import TokenDocument
    from lorakit.evaluation.scoring import WindowScorer, auto_batch_size
    from lorakit.evaluation.windows import plan_windows
    from lorakit.inference.planning import open_session

    session, _ = open_session(str(tiny_model_dir), quiet=True)
    document = TokenDocument("long", torch.randint(0, 500, (4_000,)))
    windows = plan_windows([4_000], 64, 16)
    batch = auto_batch_size("cpu", 64, 16, 512)
    assert batch == auto_batch_size("cpu", 64, 16, 512) <= 4096 // 64
    scorer = WindowScorer(session, [document], batch)
    assert scorer.path_name == "fast"
    shapes = []
    forward = session.model.forward

    def recording(*args, **kwargs):
        output = forward(*args, **kwargs)
        shapes.append((tuple(kwargs["input_ids"].shape), tuple(output.logits.shape)))
        return output

    session.model.forward = recording
    total = scorer.score(windows)
    assert total.tokens == 4_000 - 1
    assert max(ids[0] for ids, _ in shapes) <= batch and max(ids[1] for ids, _ in shapes) == 64
    assert max(logits[1] for _, logits in shapes) == 64  # only the first window keeps every position
    assert sorted(logits[1] for _, logits in shapes)[len(shapes) // 2] == 17


def test_history_without_a_log_says_where_it_will_be(run_cli, lorakit_home):
    code, out, err = run_cli("eval", "--history")
    assert code == 0 and out == "" and "No evaluations logged yet" in err
    code, out, _ = run_cli("eval", "--history", "--json")
    assert code == 0 and json.loads(out) == []
