"""Measuring tools shared by every benchmark: interleaved runs, statistics, records, peak RSS.

A benchmark is a module ``benchmarks/<name>_bench.py`` whose docstring states its model, data,
settings, reference and target, and which exposes ``run(quick: bool) -> list[dict]``: one record per
metric. ``python -m benchmarks run`` runs each module in its own process, so a crash or a leak in one
never spoils the others. The API a module uses::

    from benchmarks.harness import interleave, series, summarize, paired_ratio, record, failed, progress

    samples = interleave({"lorakit": run_lorakit, "reference": run_reference}, repeats=5, warmup=1)
    # One warm-up round, then A B A B ... (rotate=True: A B, B A, ...). Each call is timed with
    # perf_counter (CUDA synchronised), gc runs between calls outside the timing. A sample is a dict:
    # {"seconds": wall, "cpu_seconds": this process's CPU time} plus what the callable returned
    # (a dict such as {"tokens": 32} is merged, a number is stored as "value").
    mine = [s["tokens"] / s["seconds"] for s in samples["lorakit"]]   # or series(samples["lorakit"])
    theirs = [s["tokens"] / s["seconds"] for s in samples["reference"]]
    summarize(mine)                 # Stats(median, min, max, n)
    paired_ratio(mine, theirs)      # median over rounds of mine[i] / theirs[i]
    record("generate", "tokens_per_s", mine, theirs, target=">= 0.97", checked="same 32 tokens",
           device=device_label("cpu"), unit="tok/s")
    progress("generate: timing")    # a time-stamped line on stderr

``record`` takes numbers or lists of samples (lists become median + range and the ratio is paired).
The ratio is always lorakit / reference; ``target`` is a comparison on that ratio (">= 1.5",
"<= 0.05") or None for a number reported without a target (``holds`` is then None) unless the
benchmark passes ``holds`` itself (e.g. "imports no torch"). A failed correctness check
(``check_ok=False``) gives ``holds=False``, no ratio and ``checked="FAILED: <reason>"``: a ratio is
only reported for two sides that computed the same thing.

Process-level numbers come from a fresh process per side: ``run_command(argv)`` (wall time and
the command's own peak RSS: its VmHWM sampled from /proc, since Linux's ``wait4``/RUSAGE_CHILDREN
ru_maxrss can carry the parent's memory into the child's) and ``peak_rss_in_child("benchmarks.x:fn", *args)``
(calls a function in a new interpreter; returns its JSON-able result and that process's peak RSS).
"""

from __future__ import annotations

import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REQUIRED_KEYS = ("benchmark", "metric", "lorakit", "reference", "ratio", "target", "holds", "checked", "device", "runs")
"""Every record has these keys; optional extras: unit, lorakit_range, reference_range, ratio_range
(min and max of the per-round ratios), note, failed."""

_TARGET = re.compile(r"^\s*(>=|<=|>|<|==)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*x?\s*$")
REPO_ROOT = Path(__file__).resolve().parents[1]
_STARTED = time.perf_counter()  # this benchmark process's start, for progress()


def progress(message: str) -> None:
    """A progress line on stderr, stamped with the seconds since this benchmark process started."""
    print(f"[{time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


# ---- interleaving and statistics -------------------------------------------------------------
def _synchronise() -> None:
    torch = sys.modules.get("torch")  # never import torch here: the CLI benchmark must stay light
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(call: Callable[[], Any]) -> dict:
    gc.collect()
    _synchronise()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = call()
    _synchronise()
    sample = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started}
    if isinstance(result, dict):
        sample.update(result)
    elif isinstance(result, (int, float)) and not isinstance(result, bool):
        sample["value"] = float(result)
    return sample


def interleave(sides: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1, rotate: bool = False) -> dict[str, list[dict]]:
    """Call every side once per round, in order, ``warmup`` untimed rounds then ``repeats`` rounds.

    ``rotate=True`` starts round r at side r (A B C, B C A, C A B, ...): with more than two sides no
    side always runs first or right after the same neighbour.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(warmup):
        for call in sides.values():
            _timed(call)
    names = list(sides)
    samples: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(repeats):
        for name in rotated(names, round_index) if rotate else names:
            samples[name].append(_timed(sides[name]))
    return samples


def rotated(names, round_index: int) -> list:
    """``names`` starting at the round's own one (A B C, B C A, C A B, ...): load that drifts over a
    run then favours no side, and no side always runs right after the same neighbour."""
    names = list(names)
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def series(samples: list[dict], key: str = "seconds") -> list[float]:
    return [float(sample[key]) for sample in samples]


@dataclass(frozen=True)
class Stats:
    median: float
    min: float
    max: float
    n: int


def summarize(values) -> Stats:
    values = [float(value) for value in values]
    if not values:
        raise ValueError("no values to summarize")
    return Stats(statistics.median(values), min(values), max(values), len(values))


def per_round_ratios(mine, theirs) -> list[float]:
    """mine[i] / theirs[i] for paired series (equal lengths, no zero reference); else []."""
    mine, theirs = [float(v) for v in mine], [float(v) for v in theirs]
    if len(mine) != len(theirs) or any(value == 0 for value in theirs):
        return []
    return [a / b for a, b in zip(mine, theirs)]


def paired_ratio(mine, theirs) -> float | None:
    """Median of per-round ratios: each lorakit run is divided by the reference run next to it, which
    cancels load that drifts over minutes (the machines are shared). Unequal lengths: ratio of medians."""
    mine, theirs = [float(v) for v in mine], [float(v) for v in theirs]
    if not mine or not theirs:
        return None
    rounds = per_round_ratios(mine, theirs)
    if rounds:
        return statistics.median(rounds)
    reference = statistics.median(theirs)
    return statistics.median(mine) / reference if reference else None


def meets(ratio: float | None, target: str) -> bool:
    match = _TARGET.match(target)
    if not match:
        raise ValueError(f"target {target!r} is not a comparison like '>= 1.5'")
    if ratio is None:
        return False
    op, bound = match.group(1), float(match.group(2))
    return {">=": ratio >= bound, "<=": ratio <= bound, ">": ratio > bound, "<": ratio < bound, "==": ratio == bound}[op]


# ---- records -----------------------------------------------------------------------------------
def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def record(benchmark: str, metric: str, lorakit, reference, *, target: str | None = None, checked: str = "",
           check_ok: bool = True, device: str = "cpu", runs: int | None = None, unit: str = "",
           ratio: float | None = None, holds: bool | None = None, note: str = "") -> dict:
    """One metric, lorakit against the reference; see the module docstring for the rules."""
    entry: dict[str, Any] = {"benchmark": benchmark, "metric": metric}
    values, extras = {}, {}
    for side, data in (("lorakit", lorakit), ("reference", reference)):
        if isinstance(data, (list, tuple)):
            stats = summarize(data)
            values[side] = list(data)
            entry[side] = _round(stats.median)
            extras[f"{side}_range"] = [_round(stats.min), _round(stats.max)]
        else:
            values[side] = None if data is None else [float(data)]
            entry[side] = None if data is None else _round(float(data))
    if ratio is None and values["lorakit"] is not None and values["reference"] is not None:
        ratio = paired_ratio(values["lorakit"], values["reference"])
        spread = per_round_ratios(values["lorakit"], values["reference"])
        if len(spread) > 1:
            extras["ratio_range"] = [_round(min(spread), 3), _round(max(spread), 3)]  # how far to trust the verdict
    if not check_ok:
        ratio, holds, checked = None, False, f"FAILED: {checked}"
    elif holds is None and target is not None:
        holds = meets(_round(ratio), target)  # judge the number that is shown
    entry.update(ratio=_round(ratio), target=target, holds=holds, checked=checked, device=device)
    sizes = [len(v) for v in values.values() if v is not None]
    entry["runs"] = runs if runs is not None else (min(sizes) if sizes else 0)
    entry.update(extras)  # optional extras after the fixed keys
    if unit:
        entry["unit"] = unit
    if note:
        entry["note"] = note
    if not check_ok:
        entry["failed"] = True
    return entry


def failed(benchmark: str, reason: str, metric: str = "run", device: str = "", target: str | None = None) -> dict:
    """A benchmark (or one metric) that could not produce a trustworthy number."""
    entry = {"benchmark": benchmark, "metric": metric, "lorakit": None, "reference": None, "ratio": None,
             "target": target, "holds": False, "checked": f"FAILED: {reason}", "device": device, "runs": 0}
    entry["failed"] = True
    return entry


def validate(entry: Any, benchmark: str) -> dict:
    """A record from a benchmark module, or a failed record saying what is wrong with it."""
    if not isinstance(entry, dict):
        return failed(benchmark, f"record is a {type(entry).__name__}, not a dict")
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        return failed(benchmark, f"record {entry.get('metric', '?')!r} lacks keys: {', '.join(missing)}", str(entry.get("metric", "run")))
    problems = [key for key in ("lorakit", "reference", "ratio") if entry[key] is not None and not isinstance(entry[key], (int, float))]
    if entry["holds"] not in (True, False, None):
        problems.append("holds")
    if problems:
        return failed(benchmark, f"record {entry['metric']!r} has non-numeric {', '.join(problems)}", str(entry["metric"]))
    try:
        json.dumps(entry)
    except (TypeError, ValueError) as error:
        return failed(benchmark, f"record {entry['metric']!r} is not JSON: {error}", str(entry["metric"]))
    return entry


def is_failure(entry: dict) -> bool:
    return bool(entry.get("failed")) or str(entry.get("checked", "")).startswith("FAILED")


# ---- processes: wall time and peak RSS per side ------------------------------------------------
@dataclass
class CommandResult:
    seconds: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str


def child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def _own_peak_rss(pid: int, parent_cmdline: bytes) -> int:
    """The child's VmHWM from /proc, once it has exec'd (0 when unknown).

    Not ``os.wait4``'s ru_maxrss: Linux carries the parent's high-water mark across fork/vfork + exec
    into the child's, so a 30 MB command started from a 500 MB benchmark reports 500 MB.
    """
    try:
        if Path(f"/proc/{pid}/cmdline").read_bytes() == parent_cmdline:
            return 0  # not exec'd yet: /proc would still show the parent's memory
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_command(argv: list[str], env: dict | None = None, timeout: float | None = None, cwd=None) -> CommandResult:
    """Run one command: its wall time and its own peak RSS.

    On Linux the peak is the child's VmHWM, sampled every 1 ms for the first 0.2 s and every 10 ms
    after (a high-water mark, so a late sample still holds an earlier peak); elsewhere ``os.wait4``'s
    ru_maxrss, which may include the parent's memory (see :func:`_own_peak_rss`).
    """
    parent_cmdline = Path("/proc/self/cmdline").read_bytes() if Path("/proc/self/cmdline").exists() else None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        peak = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - started
            if timeout is not None and elapsed > timeout:
                process.kill()
                os.wait4(process.pid, 0)
                process.returncode = -9
                raise subprocess.TimeoutExpired(argv, timeout)
            if parent_cmdline is not None:
                peak = max(peak, _own_peak_rss(process.pid, parent_cmdline))
            time.sleep(0.001 if elapsed < 0.2 else 0.01)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
        if not peak:
            peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
        out.seek(0), err.seek(0)
        return CommandResult(seconds, peak, process.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def peak_rss_in_child(target: str, *args, timeout: float | None = None) -> tuple[Any, int]:
    """Call ``module:function(*args)`` in a fresh interpreter; return (its JSON result, peak RSS bytes)."""
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-") as tmp:
        result_file = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "benchmarks", "_call", target, json.dumps(list(args)), str(result_file)]
        done = run_command(argv, env=child_env(), timeout=timeout)
        if done.returncode != 0 or not result_file.is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{target} failed in its child process (exit {done.returncode}): {tail}")
        return json.loads(result_file.read_text())["result"], done.peak_rss_bytes


def call_and_report(target: str, args_json: str, result_file: str) -> None:
    """The child side of :func:`peak_rss_in_child`."""
    import importlib

    module_name, _, function_name = target.partition(":")
    result = getattr(importlib.import_module(module_name), function_name)(*json.loads(args_json))
    Path(result_file).write_text(json.dumps({"result": result}))


# ---- where it runs ---------------------------------------------------------------------------
def device_label(device: str | None = None) -> str:
    """``cpu (2 threads)`` or ``cuda (NVIDIA H100 80GB HBM3)``: the device lorakit picked (imports torch)."""
    import torch

    if device is None:
        from lorakit.loaders.devices import pick_device

        device = pick_device()
    device = str(device)
    if device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if device == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return device
