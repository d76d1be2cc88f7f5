"""Dataset reading, --compare parsing, the log and the cache key (no model needed)."""

import json

import pytest

from lorakit.errors import AdapterError, LorakitError, UsageError
from lorakit.evaluation import records
from lorakit.evaluation.configs import build_configs
from lorakit.evaluation.sources import read_documents, resolve_dataset


def test_text_folder_and_rows_are_read_as_documents(tmp_path):
    (tmp_path / "one.txt").write_text("first file")
    folder = tmp_path / "texts"
    folder.mkdir()
    for name in ("part10.txt", "part2.txt", "part1.txt", "notes.md"):
        (folder / name).write_text(name)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"body": "row one"}) + "\n\n" + json.dumps({"body": "row two"}) + "\n")
    listed = tmp_path / "rows.json"
    listed.write_text(json.dumps([{"text": "a"}, {"text": "b"}]))

    assert [d.text for d in read_documents(resolve_dataset(str(tmp_path / "one.txt")))] == ["first file"]
    assert [d.name for d in read_documents(resolve_dataset(str(folder)))] == ["part1.txt", "part2.txt", "part10.txt"]
    assert [(d.name, d.text) for d in read_documents(resolve_dataset(str(rows), text_field="body"))] == [("line 1", "row one"), ("line 3", "row two")]
    assert [d.text for d in read_documents(resolve_dataset(str(listed)))] == ["a", "b"]


def test_unknown_field_names_the_row_and_its_fields(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"body": "x"}) + "\n" + json.dumps({"title": "y"}) + "\n")
    with pytest.raises(UsageError) as raised:
        read_documents(resolve_dataset(str(rows), text_field="body"))
    assert raised.value.one_line().startswith("line 2 of") and "no field 'body' (its fields: title)" in raised.value.one_line()


@pytest.mark.parametrize(
    "args, expected",
    [
        (("missing.txt",), "dataset 'missing.txt' not found"),
        (("rows.jsonl", "body", "alpaca"), "give one or the other"),
        (("one.txt", "body"), "read as plain text"),
        (("empty-folder",), "has no .txt files"),
    ],
)
def test_dataset_options_are_checked_before_anything_loads(tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.jsonl").write_text("{}\n")
    (tmp_path / "one.txt").write_text("x")
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(LorakitError) as raised:
        resolve_dataset(*args)
    assert expected in raised.value.one_line()


def test_fingerprint_follows_content_and_options_not_mtime(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\n')
    first = resolve_dataset(str(path)).fingerprint()
    path.write_text('{"text": "a"}\n')
    assert resolve_dataset(str(path)).fingerprint() == first
    assert resolve_dataset(str(path), text_field="body").fingerprint() != first
    path.write_text('{"text": "b"}\n')
    assert resolve_dataset(str(path)).fingerprint() != first


def _adapters(home, *names):
    for name in names:
        (home / "loras" / name).mkdir(parents=True)


def test_compare_builds_labelled_configurations(lorakit_home):
    _adapters(lorakit_home, "alpha", "beta")
    configs, refs = build_configs(["alpha:0.5"], "base, alpha, alpha:2, beta, alpha+beta:0.3, base")
    assert [c.label for c in configs] == ["base", "alpha:0.5", "alpha:2", "beta", "alpha:0.5+beta:0.3"]
    assert [r.path.name for r in refs] == ["alpha", "beta"]  # each adapter attached once
    single, _ = build_configs(["alpha", "beta:0.25"], None)
    assert [c.label for c in single] == ["alpha+beta:0.25"]
    assert [c.label for c in build_configs([], None)[0]] == ["base"]


@pytest.mark.parametrize(
    "compare, error, expected",
    [
        ("base,,alpha", UsageError, "has an empty item"),
        ("alpha+alpha:0.5", UsageError, "names the LoRA 'alpha' twice"),
        ("base,nosuch", AdapterError, "LoRA 'nosuch' not found"),
        ("alpha:x", UsageError, "'x' is not a number"),
    ],
)
def test_bad_compare_lists_get_one_line(lorakit_home, compare, error, expected):
    _adapters(lorakit_home, "alpha")
    with pytest.raises(error) as raised:
        build_configs([], compare)
    assert expected in raised.value.one_line()


def test_log_appends_rows_and_keeps_what_was_there(lorakit_home):
    records.log_append([{"date": "d1", "configuration": "base", "comment": "first, with a comma"}])
    records.log_append([{"date": "d2", "configuration": "a:0.5", "comment": 'a "quoted"\nnote'}])
    rows = records.log_read()
    assert [(r["date"], r["configuration"]) for r in rows] == [("d1", "base"), ("d2", "a:0.5")]
    assert rows[0]["comment"] == "first, with a comma" and rows[1]["comment"] == 'a "quoted"\nnote'
    assert list(rows[0]) == list(records.LOG_COLUMNS)
    assert not list(records.log_path().parent.glob(".evaluations.csv.tmp-*"))


def test_cache_key_changes_with_every_part(lorakit_home):
    parts = {"model_hash": "m", "loras": [["h", 1.0]], "dataset_hash": "d", "max_length": 64, "stride": 32, "dtype": "float32"}
    key = records.cache_key(parts)
    for name, value in [("loras", [["h", 0.5]]), ("dataset_hash", "e"), ("stride", 16), ("dtype", "bfloat16"), ("model_hash", "n")]:
        assert records.cache_key({**parts, name: value}) != key
    records.cache_put(key, {"perplexity": 3.5})
    assert records.cache_get(key) == {"perplexity": 3.5}
    (records.cache_folder() / f"{key}.json").write_text("{broken")
    assert records.cache_get(key) is None  # a damaged entry is recomputed, never trusted


def test_two_adapters_with_one_folder_name_keep_distinct_labels(tmp_path, lorakit_home):
    for parent in ("a", "b"):
        (tmp_path / parent / "lora").mkdir(parents=True)
    configs, refs = build_configs([], f"base,{tmp_path}/a/lora,{tmp_path}/b/lora,{tmp_path}/a/lora")
    assert len(refs) == 2 and len(configs) == 3
    assert configs[1].label == "lora" and configs[2].label == f"{tmp_path}/b/lora"
