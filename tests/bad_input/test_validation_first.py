"""Validate first, leave nothing behind: one focused test per fix of issue 16's "training, generation,
merge, paths" list (the bad-input table tries the same inputs on every command)."""

from __future__ import annotations

import json

import pytest
from bad_input_snapshot import changes, snapshot
from bad_input_table import ROWS

from lorakit.errors import LorakitError


def _error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ROWS[:4]))
    return path


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if train reaches the tokenizer or a loader (validation must come first)."""
    from lorakit.loaders import session
    from lorakit.training import job

    def refuse(*args, **kwargs):
        raise AssertionError("work started before validation finished")

    monkeypatch.setattr(job, "load_tokenizer", refuse)
    monkeypatch.setattr(session.Session, "reload_base", refuse)


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "inf"], "--epochs must be a finite number (got inf)"),
    (["--learning-rate", "inf"], "--learning-rate must be a finite number"),
    (["--loader", "no-such-loader"], "unknown loader 'no-such-loader'"),
    (["--loader", "exllama"], "loader 'exllama'"),
    (["--format", "no-such-format"], "unknown format 'no-such-format'"),
])
def test_train_refuses_bad_parameters_before_any_work(run_cli, tiny_model_dir, rows, lorakit_home, nothing_loads, flags, message):
    before = snapshot([lorakit_home, rows.parent])
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(rows), "--name", "t", *flags)
    assert code != 0 and message in _error(err)
    assert changes(before, snapshot([lorakit_home, rows.parent])) == []


def test_a_run_that_fails_after_creating_its_folder_removes_it(run_cli, tiny_model_dir, rows, lorakit_home, monkeypatch):
    from lorakit.training import trainer

    def explode(self, *args, **kwargs):
        raise LorakitError("the disk went away")

    monkeypatch.setattr(trainer.Trainer, "run", explode)
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(rows), "--output", str(rows.parent / "new" / "deep" / "lora"),
                           "--batch-size", "4", "--micro-batch-size", "4", "--add-eos")
    assert code == 1 and "the disk went away" in _error(err)
    assert not (rows.parent / "new").exists()


def test_a_batch_larger_than_the_dataset_is_reported_honestly(run_cli, tiny_model_dir, rows):
    code, out, err = run_cli("train", str(tiny_model_dir), "--dataset", str(rows), "--name", "t", "--micro-batch-size", "64",
                             "--epochs", "1", "--warmup-steps", "0", "--rank", "2", "--add-eos", "--json")
    assert code == 0, err
    assert ("1 optimizer step of 4 examples (every example: the batch of 128 = micro batch 64 x 2 accumulation x 1 process "
            "is larger than the 4 examples)") in err
    assert json.loads(out)["completed_steps"] == 1


def test_step_summary_counts_examples_per_step():
    from lorakit.training.job import step_summary
    from lorakit.training.params import TrainParams
    from lorakit.training.plan import TrainingPlan

    params = TrainParams(micro_batch_size=2, batch_size=8)
    text = step_summary(TrainingPlan(40, 2, 4, 1, 2.0, 0), params, 1, "fp32", "cpu")
    assert text.startswith("10 optimizer steps of 8 examples (micro batch 2 x 4 accumulation x 1 process)")


@pytest.mark.parametrize("argv", [["train", "--dataset", "{rows}", "--name", "x"], ["generate", "--prompt", "hi"], ["eval", "--dataset", "{rows}"]])
def test_a_lorakit_home_that_is_a_file_is_named(run_cli, tmp_path, rows, argv):
    blocker = tmp_path / "home-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(*[a.format(rows=rows) for a in argv], env={"LORAKIT_HOME": str(blocker)})
    line = _error(err)
    assert code == 1 and f"LORAKIT_HOME '{blocker}' is a file, not a folder" in line and "NotADirectoryError" not in line
    assert blocker.read_text() == "not a folder"


def test_input_file_lines_are_all_checked_before_the_model_loads(run_cli, tiny_model_dir, tmp_path, monkeypatch):
    from lorakit.inference import planning

    monkeypatch.setattr(planning, "open_session", lambda *a, **k: pytest.fail("the model was loaded before the prompts were checked"))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b", "max_new_tokens": "many"}\n')
    code, _, err = run_cli("generate", str(tiny_model_dir), "--input-file", str(prompts))
    line = _error(err)
    assert code == 2 and f'{prompts} line 2: "max_new_tokens" must be an integer, not "many"' in line
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b", "max_new_tokens": 0}\n')
    code, _, err = run_cli("generate", str(tiny_model_dir), "--input-file", str(prompts))
    line = _error(err)
    assert f'line 2: "max_new_tokens" must be at least 1 (got 0)' in line and "--max-new-tokens" not in line


def test_per_line_settings_still_apply(run_cli, tiny_model_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a", "max_new_tokens": 2, "greedy": true, "seed": null}\n')
    code, out, err = run_cli("generate", str(tiny_model_dir), "--input-file", str(prompts), "--template", "raw")
    assert code == 0, err
    assert json.loads(out)["new_tokens"] <= 2


@pytest.mark.parametrize("inside", ["merged", "sub/merged"])
def test_merge_output_inside_the_base_folder_is_refused(run_cli, tiny_model_dir, tiny_adapter_dir, inside):
    before = snapshot([tiny_model_dir])
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--output", str(tiny_model_dir / inside))
    assert code == 1 and "is inside the input folder" in _error(err)
    assert changes(before, snapshot([tiny_model_dir])) == []


@pytest.mark.parametrize("content", [b"\x00" * 64, b"GGUF\x03\x00\x00\x00" + b"\xff" * 64], ids=["not-gguf", "truncated"])
def test_a_failed_gguf_conversion_leaves_no_lock_and_no_folder(run_cli, tmp_path, monkeypatch, content):
    home = tmp_path / "fresh-home"  # no models/ yet: the conversion would create it
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(content)
    code, _, err = run_cli("generate", str(gguf), "--prompt", "x", env={"LORAKIT_HOME": str(home)})
    assert code == 1 and "model.gguf" in _error(err)
    assert not home.exists() or not any(home.rglob("*")), sorted(home.rglob("*"))


def test_the_conversion_lock_is_gone_after_success(tmp_path):
    from lorakit.store.atomic import file_lock

    lock = tmp_path / "models" / ".x.lock"
    with file_lock(lock):
        assert lock.exists()
    assert not lock.exists()


def test_a_lock_removed_by_its_holder_is_not_trusted_by_a_waiter(tmp_path):
    """Two processes: the second waits on the first's lock file, which the first removes when done; the
    second must then lock the current file, so a third process cannot get in beside it."""
    import multiprocessing
    import time

    from lorakit.store.atomic import file_lock

    lock = tmp_path / ".x.lock"
    order = multiprocessing.get_context("fork").Queue()

    def hold(name, seconds):
        with file_lock(lock):
            order.put(f"{name} in")
            time.sleep(seconds)
            order.put(f"{name} out")

    first = multiprocessing.get_context("fork").Process(target=hold, args=("a", 0.5))
    first.start()
    time.sleep(0.2)
    second = multiprocessing.get_context("fork").Process(target=hold, args=("b", 0.5))
    second.start()
    time.sleep(0.5)
    third = multiprocessing.get_context("fork").Process(target=hold, args=("c", 0.1))
    third.start()
    for process in (first, second, third):
        process.join(10)
    events = [order.get(timeout=1) for _ in range(6)]
    for i in range(0, 6, 2):  # never two holders at once
        assert events[i].endswith(" in") and events[i + 1] == events[i].replace(" in", " out"), events
    assert not lock.exists()


def test_a_disabled_loader_is_named_with_its_switch(run_cli, tiny_model_dir):
    env = {"LORAKIT_DISABLE_PLUGINS": "transformers_loader"}
    code, _, err = run_cli("generate", str(tiny_model_dir), "--prompt", "x", env=env)
    line = _error(err)
    assert "the 'transformers' loader is disabled: LORAKIT_DISABLE_PLUGINS=transformers_loader blocks the built-in plugin 'transformers_loader'" in line
    assert "which is not registered" not in line


def test_min_chars_follows_text_generation_webui(tmp_path):
    """webui drops a block whose stripped length is <= min chars: exactly min chars is dropped."""
    from lorakit.training.raw_text import split_blocks

    kept, dropped = split_blocks("abcde\n\n\n  abcdef  \n\n\n\n\n\n", "\n\n\n", 5)
    assert kept == ["  abcdef  "] and dropped == 1
    kept, _ = split_blocks("abcde\n\n\nxy", "\n\n\n", 0)
    assert kept == ["abcde", "xy"]  # 0 still drops only empty blocks


def test_min_chars_help_says_the_rule(run_cli):
    code, out, _ = run_cli("train", "--help")
    text = " ".join(out.split()).replace("- ", "-")  # click wraps at hyphens
    assert code == 0 and "drop blocks whose stripped text is at most this many characters (text-generation-webui's rule)" in text


def test_a_format_file_with_a_byte_order_mark_is_read(tmp_path):
    from lorakit.training.formats import FormatFileFormatter

    path = tmp_path / "fmt.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"instruction,output": "Q: %instruction%\nA: %output%"}).encode())
    formatter = FormatFileFormatter.from_path(path)
    assert formatter.render({"instruction": "a", "output": "b"}).text == "Q: a\nA: b"


def test_datasets_configs_and_prompts_with_a_byte_order_mark_are_read(tmp_path):
    from lorakit.inference.runner import read_prompts
    from lorakit.store.rows import read_rows
    from lorakit.training.params import read_config_file

    bom = b"\xef\xbb\xbf"
    (tmp_path / "rows.json").write_bytes(bom + json.dumps(ROWS[:2]).encode())
    (tmp_path / "c.yaml").write_bytes(bom + b"rank: 8\n")
    (tmp_path / "p.jsonl").write_bytes(bom + b'{"prompt": "hi"}\n')
    assert [row for _, row in read_rows(tmp_path / "rows.json")] == ROWS[:2]
    assert read_config_file(tmp_path / "c.yaml") == {"rank": 8}
    assert read_prompts(str(tmp_path / "p.jsonl"))[0]["prompt"] == "hi"


def test_eval_checks_adapters_before_the_cache_and_the_dataset(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path, monkeypatch):
    from bad_input_table import Workspace, adapter, with_config

    from lorakit.evaluation import runner

    monkeypatch.setattr(runner.Run, "compute", lambda *a, **k: pytest.fail("eval tokenized before checking the adapters"))
    ws = Workspace(tmp_path, tmp_path, tiny_model_dir, tiny_adapter_dir, tiny_adapter_dir)
    adapter("r16", config=with_config(r=16))(ws)
    (tmp_path / "t.txt").write_text("words " * 100)
    code, _, err = run_cli("eval", str(tiny_model_dir), "--dataset", str(tmp_path / "t.txt"), "--compare", f"base,{tmp_path / 'r16'}")
    assert code == 1 and "says r=16" in _error(err)
