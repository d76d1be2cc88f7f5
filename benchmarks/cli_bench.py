"""cli: start-up of `lorakit --help` against `python -c pass`, and proof that it imports no torch.

Model and data: none. lorakit side: the installed `lorakit` console script with `--help` (or
`python -m lorakit --help` when the script is not on PATH), each run a fresh process. Reference:
`python -c pass` on the same interpreter, the floor every Python command starts from. Interleaved,
one warm-up round, 10 runs with --quick, 30 otherwise; wall time and peak RSS (the process's own VmHWM) per process.
Checked: `lorakit --help` exits 0 and prints its usage. One more run with PYTHONPROFILEIMPORTTIME=1
lists every module it imports: none of torch, transformers, peft, bitsandbytes, huggingface_hub may be
among them.
Target: imports no torch (and none of the other heavy libraries). The wall and RSS ratios are reported
without a target: they show what lorakit's own start-up costs above Python's.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from benchmarks.harness import child_env, failed, interleave, record, run_command

NAME = "cli"
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "huggingface_hub")


def lorakit_argv() -> list[str]:
    # The script this interpreter installed, not a PATH hit: a pyenv shim would add its own start-up.
    installed = Path(sysconfig.get_path("scripts")) / ("lorakit.exe" if os.name == "nt" else "lorakit")
    script = str(installed) if installed.is_file() else shutil.which("lorakit")
    return [script, "--help"] if script else [sys.executable, "-m", "lorakit", "--help"]


def imported_modules(stderr: str) -> dict[str, int]:
    """PYTHONPROFILEIMPORTTIME lines -> {top-level module: cumulative microseconds}."""
    modules: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2].rstrip()
        top = name.strip().split(".")[0]
        if name.startswith(" ") and name[1:2] != " ":  # depth 0 in the import tree
            modules[top] = modules.get(top, 0) + int(parts[1])
        else:
            modules.setdefault(top, 0)
    return modules


def run(quick: bool) -> list[dict]:
    argv = lorakit_argv()
    env = child_env()
    profile = run_command(argv, env=child_env({"PYTHONPROFILEIMPORTTIME": "1"}), timeout=120)
    if profile.returncode != 0 or "Usage" not in profile.stdout:
        tail = (profile.stderr.strip().splitlines() or ["no output"])[-1]
        return [failed(NAME, f"`{' '.join(argv)}` exited {profile.returncode}: {tail}", metric="wall_s")]
    modules = imported_modules(profile.stderr)
    heavy = [name for name in HEAVY if name in modules]
    largest = sorted(modules.items(), key=lambda item: -item[1])[:4]
    largest_text = ", ".join(f"{name} {micros / 1000:.0f} ms" for name, micros in largest)

    def lorakit_side():
        done = run_command(argv, env=env, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` exited {done.returncode}")
        return {"rss_mb": done.peak_rss_bytes / 2**20}

    def python_side():
        done = run_command([sys.executable, "-c", "pass"], env=env, timeout=60)
        return {"rss_mb": done.peak_rss_bytes / 2**20}

    samples = interleave({"lorakit": lorakit_side, "reference": python_side}, repeats=10 if quick else 30, warmup=1)
    mine, theirs = samples["lorakit"], samples["reference"]
    checked = f"exit 0 with usage; {len(modules)} top-level modules imported"
    return [
        record(NAME, "wall_s", [s["seconds"] for s in mine], [s["seconds"] for s in theirs], unit="s", checked=checked,
               device="cpu", note="`lorakit --help` vs `python -c pass`"),
        record(NAME, "peak_rss_mb", [s["rss_mb"] for s in mine], [s["rss_mb"] for s in theirs], unit="MiB", checked=checked, device="cpu"),
        record(NAME, "imports_torch", float(len(heavy)), None, target="imports no torch", holds=not heavy, device="cpu", runs=1,
               checked=f"heavy modules imported: {', '.join(heavy) or 'none'}; largest imports: {largest_text}"),
    ]
