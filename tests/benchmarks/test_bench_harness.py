"""The harness's statistics, ratio/holds logic, record schema and runner, with throwaway fake benchmarks."""

from __future__ import annotations

import json
import sys
import types

import pytest

from benchmarks import __main__ as runner
from benchmarks import harness, report
from benchmarks.harness import (
    REQUIRED_KEYS,
    failed,
    interleave,
    meets,
    paired_ratio,
    record,
    summarize,
    validate,
)


def test_summarize_gives_median_min_max():
    stats = summarize([3, 1, 10, 2])
    assert (stats.median, stats.min, stats.max, stats.n) == (2.5, 1, 10, 4)
    with pytest.raises(ValueError):
        summarize([])


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # Load drifts 10x between rounds; each pair still says "lorakit is 2x": pairing cancels the drift.
    assert paired_ratio([2, 40, 600], [1, 20, 300]) == 2.0
    assert paired_ratio([2, 3, 100], [1, 1, 1]) == 3.0  # one bad round does not move the median
    assert paired_ratio([4, 6], [2]) == 2.5  # unequal lengths: ratio of medians
    assert paired_ratio([], [1]) is None


@pytest.mark.parametrize("target, ratio, expected", [
    (">= 1.5", 1.5, True), (">= 1.5", 1.49, False), ("<= 0.05", 0.04, True), ("<=0.05", 0.06, False),
    ("> 1", 1.0, False), ("< 2x", 1.9, True), (">= 1.5", None, False),
])
def test_targets_compare_the_ratio(target, ratio, expected):
    assert meets(ratio, target) is expected


def test_a_target_that_is_not_a_comparison_is_refused():
    with pytest.raises(ValueError, match="not a comparison"):
        meets(1.0, "fast enough")


def test_record_from_samples_has_the_schema_and_judges_the_shown_ratio():
    entry = record("train", "tokens_per_s", [400, 412, 430], [200, 231, 215], target=">= 1.5", checked="loss 1.91 vs 1.95", unit="tok/s")
    assert list(entry)[:len(REQUIRED_KEYS)] == list(REQUIRED_KEYS)
    assert entry["lorakit"] == 412 and entry["reference"] == 215
    assert entry["lorakit_range"] == [400, 430] and entry["reference_range"] == [200, 231]
    assert entry["ratio"] == pytest.approx(2.0, abs=1e-3)  # per-round: 2.0, 1.78, 2.0
    assert entry["ratio_range"] == [1.78, 2.0]
    assert entry["holds"] is True and entry["runs"] == 3 and entry["device"] == "cpu"
    json.dumps(entry)
    # 0.9696 shows as 0.9696 (4 significant digits) and fails ">= 0.97"; 0.99996 shows as 1 and holds.
    assert record("g", "t", 0.9696, 1.0, target=">= 0.97")["holds"] is False
    assert record("g", "t", 0.99996, 1.0, target=">= 1")["holds"] is True


def test_record_without_target_reports_the_ratio_but_no_verdict():
    entry = record("cli", "wall_s", 0.5, 0.25)
    assert entry["ratio"] == 2.0 and entry["holds"] is None and entry["target"] is None and entry["runs"] == 1


def test_a_failed_check_withholds_the_ratio():
    entry = record("eval", "tokens_per_s", [10, 11], [5, 5], target=">= 1.0", check_ok=False, checked="perplexity 12.1 vs 12.9")
    assert entry["ratio"] is None and entry["holds"] is False
    assert entry["checked"] == "FAILED: perplexity 12.1 vs 12.9" and harness.is_failure(entry)


def test_explicit_holds_for_a_non_ratio_target():
    entry = record("cli", "imports_torch", 0.0, None, target="imports no torch", holds=True, runs=1)
    assert entry["holds"] is True and entry["ratio"] is None


def test_interleave_runs_warmup_then_a_b_a_b():
    calls = []
    sides = {"lorakit": lambda: calls.append("A") or {"tokens": 5}, "reference": lambda: calls.append("B") or 2.5}
    samples = interleave(sides, repeats=3, warmup=1)
    assert calls == ["A", "B"] * 4
    assert len(samples["lorakit"]) == 3 and samples["lorakit"][0]["tokens"] == 5
    assert samples["reference"][0]["value"] == 2.5 and samples["reference"][0]["seconds"] >= 0
    assert harness.series(samples["lorakit"], "tokens") == [5.0, 5.0, 5.0]


def test_validate_turns_a_malformed_record_into_a_failure():
    good = record("merge", "wall_s", 1.0, 2.0, target="<= 0.5")
    assert validate(good, "merge") is good
    missing = validate({"benchmark": "merge", "metric": "wall_s", "lorakit": 1.0}, "merge")
    assert missing["holds"] is False and "lacks keys" in missing["checked"] and "ratio" in missing["checked"]
    assert "non-numeric" in validate({**good, "ratio": "fast"}, "merge")["checked"]
    assert harness.is_failure(validate("nope", "merge"))


def _fake_module(monkeypatch, name, run):
    module = types.ModuleType(f"benchmarks.{name}_bench")
    if run is not None:
        module.run = run
    monkeypatch.setitem(sys.modules, module.__name__, module)


def test_runner_reports_missing_crashing_and_malformed_modules(monkeypatch):
    _fake_module(monkeypatch, "zzgood", lambda quick: [record("zzgood", "x", 2.0, 1.0, target=">= 1.5", checked=f"quick={quick}")])
    _fake_module(monkeypatch, "zzcrash", lambda quick: 1 / 0)
    _fake_module(monkeypatch, "zzbad", lambda quick: [{"benchmark": "zzbad"}])
    good = runner._run_one_in_process("zzgood", True)
    assert good[0]["holds"] is True and good[0]["checked"] == "quick=True"
    crash = runner._run_one_in_process("zzcrash", True)
    assert crash[0]["holds"] is False and "ZeroDivisionError" in crash[0]["checked"]
    assert "lacks keys" in runner._run_one_in_process("zzbad", True)[0]["checked"]
    missing = runner._run_one_in_process("zznothere", True)
    assert missing[0]["checked"] == "FAILED: benchmarks/zznothere_bench.py does not exist"


def test_run_command_measures_each_child_peak_rss():
    small = harness.run_command([sys.executable, "-c", "pass"])
    big = harness.run_command([sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"])
    assert small.returncode == 0 and big.returncode == 0
    assert big.peak_rss_bytes - small.peak_rss_bytes > 250 * 2**20  # per child, not the max over all children


def test_run_command_does_not_count_the_parents_memory():
    # Linux carries the parent's high-water mark into a child's wait4 ru_maxrss; the harness must not.
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    done = harness.run_command([sys.executable, "-c", "import time; time.sleep(0.05)"])
    assert done.peak_rss_bytes < 150 * 2**20, done.peak_rss_bytes
    del ballast


def test_peak_rss_in_child_returns_the_function_result():
    result, peak = harness.peak_rss_in_child("json:dumps", [1, 2])
    assert result == "[1, 2]" and peak > 1 * 2**20


def test_cmd_run_keeps_going_writes_json_and_markdown(monkeypatch, tmp_path, capsys):
    outcomes = {
        "cli": [record("cli", "wall_s", 0.5, 0.25, checked="ok")],
        "apply": [record("apply", "add_remove_vs_reload_s", 0.3, 0.5, target="<= 0.05", checked="ok", note="add 200 ms")],
    }

    def fake_child(name, quick, timeout, threads=None):
        if name == "train":
            return [failed("train", "crashed: RuntimeError: boom")]
        return outcomes[name]

    monkeypatch.setattr(runner, "_run_one_in_child", fake_child)
    out, page = tmp_path / "r.json", tmp_path / "b.md"
    code = runner.main(["run", "train", "apply", "cli", "--quick", "--threads", "1", "--json", str(out), "--markdown", str(page)])
    assert code == 1  # the crash is a failure; the other two still ran
    records = json.loads(out.read_text())
    assert [entry["benchmark"] for entry in records] == ["train", "apply", "cli"]
    assert all(set(REQUIRED_KEYS) <= set(entry) for entry in records)
    text = page.read_text()
    assert "python -m benchmarks run train apply cli --quick --threads 1" in text
    assert "**apply / add_remove_vs_reload_s**: ratio 0.6, target <= 0.05" in text
    assert "**train / run**: FAILED: crashed: RuntimeError: boom" in text
    assert "cores" in text and "GiB RAM" in text
    monkeypatch.setattr(runner, "_run_one_in_child", lambda name, quick, timeout, threads=None: outcomes["cli"])
    assert runner.main(["run", "cli"]) == 0
    monkeypatch.setattr(runner, "_run_one_in_child", lambda name, quick, timeout, threads=None: outcomes["apply"])
    assert runner.main(["run", "apply"]) == 0 and runner.main(["run", "apply", "--strict"]) == 1
    assert runner.main(["run", "nosuch"]) == 2


def test_number_formatting():
    assert report.number(None) == "—" and report.number(412.04) == "412" and report.number(12345.6) == "12,346"
    assert report.number(0.96961, 4) == "0.9696"


def test_interleave_rotate_changes_who_goes_first():
    calls = []
    sides = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    interleave(sides, repeats=3, warmup=0, rotate=True)
    assert "".join(calls) == "ABCBCACAB"
