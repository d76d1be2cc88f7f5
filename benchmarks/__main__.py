"""``python -m benchmarks run [NAME ...] [--quick] [--json OUT] [--markdown OUT] [--strict]`` and ``list``.

Each benchmark runs in its own process (so memory and crashes stay with it); its records come back
through a temporary JSON file. A module that is missing, crashes or returns malformed records is
reported as a failed benchmark and the others still run. Exit status: 0 when every benchmark ran and
every correctness check passed; 1 when one failed (or, with --strict, when a target does not hold);
2 for bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import BENCHMARKS, describe
from benchmarks.harness import child_env, failed, is_failure, validate


def _run_one_in_process(name: str, quick: bool) -> list[dict]:
    module_name = f"benchmarks.{name}_bench"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return [failed(name, f"benchmarks/{name}_bench.py does not exist")]
        traceback.print_exc()
        return [failed(name, f"cannot import {module_name}: {error}")]
    except Exception as error:  # noqa: BLE001 - a broken module must not stop the others
        traceback.print_exc()
        return [failed(name, f"cannot import {module_name}: {type(error).__name__}: {error}")]
    try:
        records = module.run(quick)
    except Exception as error:  # noqa: BLE001
        traceback.print_exc()
        return [failed(name, f"crashed: {type(error).__name__}: {error}".splitlines()[0])]
    if not isinstance(records, list) or not records:
        return [failed(name, f"run() returned {type(records).__name__} {records!r:.60}, not a list of records")]
    return [validate(entry, name) for entry in records]


def _run_one_in_child(name: str, quick: bool, timeout: float | None, threads: int | None = None) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-") as tmp:
        out = Path(tmp) / "records.json"
        argv = [sys.executable, "-m", "benchmarks", "_one", name, str(out)] + (["--quick"] if quick else [])
        try:
            # The child's stdout goes to our stderr: library chatter must never mix with data on stdout.
            sys.stderr.flush()
            done = subprocess.run(argv, stdout=_stderr_fd(), timeout=timeout,
                                  env=child_env(_thread_env(threads)))
        except subprocess.TimeoutExpired:
            return [failed(name, f"did not finish within {timeout:g} s")]
        if out.is_file():
            return json.loads(out.read_text())
        reason = f"its process exited with status {done.returncode}"
        if done.returncode in (-9, 137):
            reason += " (killed: out of memory?)"
        return [failed(name, reason)]


def _thread_env(threads: int | None) -> dict:
    if threads is None:
        return {}
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def _stderr_fd():
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr without a file descriptor
        return subprocess.DEVNULL


def _warn_if_busy(threads: int | None) -> None:
    """Thread oversubscription on a busy CPU slows torch 5-10x and drowns the signal; say so."""
    if threads is not None or not hasattr(os, "getloadavg"):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0]
    if load > cores:
        print(f"warning: load average {load:.1f} on {cores} cores; torch's threads will fight the other work "
              "(try --threads 1; ratios stay fair either way)", file=sys.stderr)


def _command_line(argv: list[str]) -> str:
    return "python -m benchmarks " + " ".join(shlex.quote(arg) for arg in argv)


def cmd_run(args, argv: list[str]) -> int:
    from benchmarks.report import render_table, write_markdown

    names = args.names or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"Error: unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print("Error: --threads must be at least 1", file=sys.stderr)
        return 2
    _warn_if_busy(args.threads)
    records, durations = [], {}
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        records.extend(_run_one_in_child(name, args.quick, args.timeout, args.threads))
        durations[name] = time.perf_counter() - started
        print(f"== {name} done in {durations[name]:.0f} s", file=sys.stderr, flush=True)
    render_table(records, durations)
    command = _command_line(argv)
    if args.json:
        _write(Path(args.json), json.dumps(records, indent=2) + "\n")
    if args.markdown:
        _write(Path(args.markdown), write_markdown(records, durations, command))
    if any(is_failure(entry) for entry in records):
        return 1
    if args.strict and any(entry["holds"] is False for entry in records):
        return 1
    return 0


def _write(path: Path, text: str) -> None:
    from lorakit.store.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _quiet(heavy: bool) -> None:
    """A benchmark process runs library code directly (the reference side never goes through the CLI),
    so it sets up lorakit's filter of known third-party warnings and banners itself, before any import.
    ``heavy`` also silences transformers' bars and GPTQModel's banner (that imports transformers'
    logging, which the CLI start-up benchmark must not pay for)."""
    from lorakit.output.quiet import quiet_libraries, quiet_logs

    quiet_libraries() if heavy else quiet_logs()


def cmd_list(_args) -> int:
    for name in BENCHMARKS:
        print(f"{name:10} {describe(name)[0]}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="lorakit against the reference way, side by side.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run benchmarks (all when no NAME is given)")
    run.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(BENCHMARKS)}")
    run.add_argument("--quick", action="store_true", help="fewer repetitions and smaller sizes (under 10 minutes on 2 cores)")
    run.add_argument("--json", metavar="OUT", help="write the records (a JSON list, one per metric) to OUT")
    run.add_argument("--markdown", metavar="OUT", help="write the results page (e.g. docs/benchmarks.md) to OUT")
    run.add_argument("--strict", action="store_true", help="also exit 1 when a target does not hold")
    run.add_argument("--threads", type=int, default=None, metavar="N",
                     help="CPU threads for torch in each benchmark (OMP_NUM_THREADS); on a busy machine 1 avoids thread oversubscription")
    run.add_argument("--timeout", type=float, default=None, metavar="S", help="give up on one benchmark after S seconds")
    sub.add_parser("list", help="list the benchmarks")
    one = sub.add_parser("_one")  # internal: one benchmark in this process, records to a file
    one.add_argument("name")
    one.add_argument("out")
    one.add_argument("--quick", action="store_true")
    call = sub.add_parser("_call")  # internal: benchmarks.harness.peak_rss_in_child's child
    call.add_argument("target")
    call.add_argument("args_json")
    call.add_argument("out")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args, argv)
    if args.command == "list":
        return cmd_list(args)
    if args.command == "_one":
        _quiet(heavy=args.name != "cli")
        Path(args.out).write_text(json.dumps(_run_one_in_process(args.name, args.quick)))
        return 0
    from benchmarks.harness import call_and_report

    _quiet(heavy=not args.target.startswith("benchmarks.cli_bench"))

    call_and_report(args.target, args.args_json, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
