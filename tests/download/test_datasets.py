"""train/eval --dataset from local parquet/CSV/JSON/JSONL and from hub datasets (loopback hub), same rules."""

from __future__ import annotations

import csv
import io
import json

import pytest

ROWS = [{"instruction": f"Say the number {i}.", "input": "", "output": f"The number is {i}."} for i in range(6)]
TEST_ROWS = [{"instruction": "Say zero.", "input": "", "output": "Zero."}, {"instruction": "Say one.", "input": "", "output": "One."}]
FACTS = "lorakit-test/facts"
MULTI = "lorakit-test/multi-config"
MULTI_README = """---
configs:
- config_name: small
  data_files:
  - split: train
    path: small/*.csv
- config_name: big
  data_files:
  - split: train
    path: big/*.jsonl
---
# two configs
"""


def parquet_bytes(rows) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def csv_text(rows) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture(scope="module")
def dataset_repos(hub):
    hub.add_commit("datasets/" + FACTS, {
        "data/train-00000-of-00001.parquet": parquet_bytes(ROWS), "data/test-00000-of-00001.parquet": parquet_bytes(TEST_ROWS),
        "README.md": b"# facts\n", "script.py": b"print('never fetched')\n",
    })
    hub.add_commit("datasets/" + MULTI, {
        "README.md": MULTI_README.encode(), "small/part.csv": csv_text(ROWS[:2]).encode(),
        "big/part.jsonl": "".join(json.dumps(r) + "\n" for r in ROWS).encode(),
    })
    return hub


def _dry_run(run_cli, model, dataset, *extra):
    code, out, err = run_cli("train", str(model), "--dataset", dataset, "--name", "dry", "--dry-run", "--json", "--format", "alpaca", *extra)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def test_every_local_format_trains_on_the_same_tokens(run_cli, tiny_model_dir, tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "rows.parquet").write_bytes(parquet_bytes(ROWS))
    (tmp_path / "rows.csv").write_text(csv_text(ROWS))
    reference, _ = _dry_run(run_cli, tiny_model_dir, str(tmp_path / "rows.json"))
    assert len(reference) == len(ROWS)
    for name in ("rows.jsonl", "rows.parquet", "rows.csv"):
        assert _dry_run(run_cli, tiny_model_dir, str(tmp_path / name))[0] == reference, name


def test_damaged_parquet_is_one_line(run_cli, tiny_model_dir, tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tmp_path / "bad.parquet"), "--name", "x", "--dry-run")
    assert code == 1 and "not a readable parquet file" in err and err.count("Error:") == 1


def test_hub_dataset_splits_configs_cache_and_offline(dataset_repos, run_cli, tiny_model_dir, tmp_path, monkeypatch):
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    reference, _ = _dry_run(run_cli, tiny_model_dir, str(tmp_path / "rows.json"))
    rows, err = _dry_run(run_cli, tiny_model_dir, FACTS)
    assert rows == reference and "fetching its data files" in err
    assert not [r for r in dataset_repos.requests if r.path.endswith("script.py")]  # data files only
    test_rows, _ = _dry_run(run_cli, tiny_model_dir, f"{FACTS}:test")
    assert len(test_rows) == 2
    small, _ = _dry_run(run_cli, tiny_model_dir, f"{MULTI}@small")
    big, _ = _dry_run(run_cli, tiny_model_dir, f"{MULTI}@big:train")
    assert small == reference[:2] and big == reference

    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", f"{FACTS}:validation", "--name", "x", "--dry-run")
    assert code == 2 and "no split 'validation'" in err and "test, train" in err
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", f"{MULTI}@huge", "--name", "x", "--dry-run")
    assert code == 2 and "huge" in err and err.count("Error:") == 1

    # Cached: offline it still trains; a dataset never fetched is one line.
    dataset_repos.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _dry_run(run_cli, tiny_model_dir, FACTS)[0] == reference and dataset_repos.requests == []
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", "lorakit-test/never-fetched", "--name", "x", "--dry-run")
    assert code == 1 and "HF_HUB_OFFLINE=1" in err and err.count("Error:") == 1


def test_eval_reads_a_hub_dataset_like_the_same_rows_on_disk(dataset_repos, run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    local = tmp_path / "test.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in TEST_ROWS))
    results = []
    for dataset in (f"{FACTS}:test", str(local)):
        code, out, err = run_cli("eval", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--dataset", dataset, "--format", "alpaca",
                                 "--max-length", "16", "--json", "--no-cache")
        assert code == 0, err
        results.append(json.loads(out))
    hub_rows, local_rows = ([(r["configuration"], r["perplexity"], r["tokens"]) for r in result] for result in results)
    assert hub_rows == local_rows
