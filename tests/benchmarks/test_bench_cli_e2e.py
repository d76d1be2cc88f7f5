"""`python -m benchmarks` end to end on the cheapest real benchmark (cli: no model needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import REQUIRED_KEYS, child_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_list_names_every_benchmark():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "list"], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["train", "train_memory", "generate", "apply", "merge", "eval", "serve", "cli"]


def test_run_cli_quick_writes_json_records(tmp_path):
    out = tmp_path / "cli.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "run", "cli", "--quick", "--json", str(out)],
                          cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""  # tables and progress go to stderr
    records = json.loads(out.read_text())
    assert {entry["metric"] for entry in records} == {"wall_s", "peak_rss_mb", "imports_torch"}
    for entry in records:
        assert set(REQUIRED_KEYS) <= set(entry) and entry["benchmark"] == "cli" and entry["device"] == "cpu"
    by_metric = {entry["metric"]: entry for entry in records}
    assert by_metric["imports_torch"]["holds"] is True, by_metric["imports_torch"]["checked"]
    wall = by_metric["wall_s"]
    assert wall["runs"] == 10 and wall["ratio"] > 1 and wall["lorakit"] > 0 and wall["reference"] > 0
    assert "imports_torch" in done.stderr and "ratio" in done.stderr
