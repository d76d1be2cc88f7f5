"""Show benchmark records: a rich table on stderr, and the markdown page docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import BENCHMARKS, describe
from benchmarks.harness import is_failure

COLUMNS = ("benchmark", "metric", "lorakit", "reference", "ratio", "target", "holds", "checked", "device", "runs")


def number(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def side(entry: dict, key: str) -> str:
    text = number(entry.get(key))
    spread = entry.get(f"{key}_range")
    if spread and entry.get(key) is not None:
        text += f" ({number(spread[0])}–{number(spread[1])})"
    return text


def ratio_text(entry: dict) -> str:
    text = number(entry.get("ratio"), 4)
    spread = entry.get("ratio_range")
    if spread and entry.get("ratio") is not None:
        text += f" ({number(spread[0])}–{number(spread[1])})"
    return text


def holds_mark(entry: dict) -> str:
    if is_failure(entry):
        return "FAILED"
    return {True: "yes", False: "NO", None: "—"}[entry.get("holds")]


def cells(entry: dict) -> list[str]:
    metric = entry["metric"] + (f" [{entry['unit']}]" if entry.get("unit") else "")
    return [entry["benchmark"], metric, side(entry, "lorakit"), side(entry, "reference"), ratio_text(entry),
            entry.get("target") or "—", holds_mark(entry), checked_text(entry), entry.get("device") or "", str(entry.get("runs", ""))]


def checked_text(entry: dict) -> str:
    text = entry.get("checked") or "(no check)"
    return f"{text} — {entry['note']}" if entry.get("note") else text


def render_table(records: list[dict], durations: dict[str, float] | None = None) -> None:
    """The table on stderr; what each check found is listed under it (too long for a column)."""
    from rich.console import Console
    from rich.table import Table

    probe = Console(stderr=True)
    console = Console(stderr=True, highlight=False, width=None if probe.is_terminal else 240)
    table = Table(title="lorakit / reference: median (min–max); ratio = median (min–max) of per-round ratios")
    shown = [column for column in COLUMNS if column != "checked"]
    for column in shown:
        table.add_column(column, justify="right" if column in ("lorakit", "reference", "ratio", "runs") else "left")
    styles = {"FAILED": "bold red", "NO": "red", "yes": "green"}
    for entry in records:
        row = dict(zip(COLUMNS, cells(entry)))
        table.add_row(*(row[column] for column in shown), style=styles.get(row["holds"]))
    console.print(table)
    for entry in records:
        console.print(f"  {entry['benchmark']}/{entry['metric']}: {checked_text(entry)}", markup=False)
    if durations:
        console.print("took: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations.items()), markup=False)


def machine() -> dict:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": model, "cores": cores, "ram_gib": ram, "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(), "load": load}


def _md_row(values: list[str]) -> str:
    return "| " + " | ".join(value.replace("|", "\\|").replace("\n", " ") for value in values) + " |"


def below_target(records: list[dict]) -> list[str]:
    lines = []
    for entry in records:
        if is_failure(entry):
            lines.append(f"- **{entry['benchmark']} / {entry['metric']}**: {entry['checked']}")
        elif entry.get("holds") is False:
            lines.append(f"- **{entry['benchmark']} / {entry['metric']}**: ratio {number(entry.get('ratio'))}, target {entry.get('target')}"
                         + (f" ({entry['note']})" if entry.get("note") else ""))
    return lines


_LABEL = re.compile(r"^([A-Za-z][A-Za-z0-9 ,'/+()-]{0,40}):\s+(.*)$")


def docstring_markdown(text: str) -> list[str]:
    """A benchmark docstring as markdown: the summary line, then one bullet per "Label: ..." line.

    A line starts a bullet only when the line before it ended a sentence (or was blank), so a wrapped
    line that happens to contain a colon stays part of the bullet above it.
    """
    lines = text.strip().splitlines()
    out, bullets, previous = [lines[0], ""], [], ""
    for raw in lines[1:]:
        line = raw.strip()
        match = _LABEL.match(line)
        if match and (not previous or previous.endswith((".", ";"))):
            bullets.append(f"- **{match.group(1)}:** {match.group(2)}")
        elif line and bullets:
            bullets[-1] += " " + line
        elif line:
            out[-1] = (out[-1] + " " + line).strip()
        previous = line
    return out + bullets


def write_markdown(records: list[dict], durations: dict[str, float], command: str) -> str:
    info = machine()
    devices = sorted({entry.get("device") for entry in records if entry.get("device")})
    ram = f"{info['ram_gib']:.0f} GiB RAM" if info["ram_gib"] else "RAM unknown"
    load = f"; load average {info['load']:.1f} when it finished" if info["load"] is not None else ""
    out = [
        "# Benchmarks",
        "",
        "<!-- Written by `python -m benchmarks run ... --markdown docs/benchmarks.md`: edit benchmarks/report.py or the",
        "     benchmark docstrings, not this file. -->",
        "",
        "Every performance claim lorakit makes comes from one harness, `python -m benchmarks`. Each benchmark runs",
        "lorakit and the reference way of doing the same job in the same process, interleaved (A B A B ...) after a",
        "warm-up round, and reports the median with min–max of several runs. Machines are noisy and shared, so the",
        "result is the **ratio lorakit / reference**, taken as the median of per-round ratios (each lorakit run is",
        "compared with the reference run beside it). A ratio is reported only after both sides were checked to",
        "compute the same thing (column *checked*); a failed check shows as FAILED with its reason.",
        "",
        "## Latest results",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {ram}, {info['os']}, Python {info['python']}{load}",
        f"- Device(s): {', '.join(devices) or 'n/a'}",
        f"- Time per benchmark: {', '.join(f'{name} {seconds:.0f} s' for name, seconds in durations.items())}",
        "",
        "### Below target",
        "",
    ]
    out += below_target(records) or ["Every benchmark with a target meets it."]
    out += ["", "### Table", "", "Values are median (min–max) over the timed runs; the ratio is the median (min–max) of the",
            "per-round ratios, so a wide ratio range says how much to trust a verdict near its target.", ""]
    out += [_md_row(list(COLUMNS)), _md_row(["---"] * len(COLUMNS))]
    out += [_md_row(cells(entry)) for entry in records]
    out += ["", "## What each benchmark measures", ""]
    for name in BENCHMARKS:
        first, text = describe(name)
        out += [f"### {name}", ""] + (docstring_markdown(text) if text else [first]) + [""]
    out += [
        "## Running them",
        "",
        "```",
        "python -m benchmarks list",
        "python -m benchmarks run --quick                    # all of them; --quick is sized for < 10 min on 2 CPU cores",
        "python -m benchmarks run generate apply --json out.json",
        "python -m benchmarks run --quick --threads 1 --markdown docs/benchmarks.md   # refresh this page",
        "```",
        "",
        "The real SmolLM2-135M model is converted once into `$LORAKIT_HOME` (default for benchmarks:",
        "`~/.cache/lorakit-bench`); adapters are made with PEFT in temporary folders. On a CUDA machine the same",
        "command runs on the GPU and every record names its device (and, on CPU, torch's thread count). On a busy",
        "machine, `--threads 1` avoids thread oversubscription, which otherwise slows torch 5-10x and buries the",
        "signal; ratios stay fair either way because both sides share the setting. Exit status: 1 when a benchmark",
        "failed or a check did not pass (`--strict`: also when a target does not hold).",
        "",
        "`--json OUT` writes one record per metric:",
        "",
        "```json",
        '{"benchmark": "generate", "metric": "tokens_per_s_1lora", "lorakit": 14.1, "reference": 14.5, "ratio": 0.97,',
        ' "target": ">= 0.97", "holds": true, "checked": "same 24 greedy tokens; ...", "device": "cpu", "runs": 3,',
        ' "unit": "tok/s", "lorakit_range": [13.8, 14.3], "reference_range": [14.2, 14.9], "ratio_range": [0.95, 0.99]}',
        "```",
        "",
        "`unit`, `lorakit_range`, `reference_range`, `ratio_range`, `note` and `failed` are optional extras.",
        "",
    ]
    return "\n".join(out)
