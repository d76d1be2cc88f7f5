"""The comparison table and ``--history`` (stdout, like the ``--json`` rows: results are data)."""

from __future__ import annotations

import math
from pathlib import Path

from lorakit.evaluation.configs import BASE


def perplexity(mean_nll: float) -> float:
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return float("inf")


def add_deltas(rows: list[dict]) -> None:
    """``delta_perplexity`` / ``delta_percent`` / ``delta_nll`` against the base row, when there is one."""
    base = next((row for row in rows if row["configuration"] == BASE), None)
    for row in rows:
        if base is None:
            row["delta_perplexity"] = row["delta_percent"] = row["delta_nll"] = None
            continue
        row["delta_perplexity"] = row["perplexity"] - base["perplexity"]
        row["delta_percent"] = 100.0 * (row["perplexity"] / base["perplexity"] - 1.0)
        row["delta_nll"] = row["mean_nll"] - base["mean_nll"]


def _delta_text(row: dict) -> str:
    if row.get("delta_perplexity") is None:
        return "-"
    if row["configuration"] == BASE:
        return "(reference)"
    return f"{row['delta_perplexity']:+.4f} ({row['delta_percent']:+.2f} %)"


def print_table(rows: list[dict], console) -> None:
    from rich.table import Table

    first = rows[0]
    title = f"Perplexity on {Path(first['dataset']).name}: max length {first['max_length']}, stride {first['stride']}"
    table = Table(title=title, title_justify="left")
    table.add_column("configuration", overflow="fold")
    table.add_column("perplexity", justify="right")
    table.add_column("mean NLL", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("delta vs base", justify="right")
    best = min(row["perplexity"] for row in rows)
    for row in rows:
        mark = " (cached)" if row.get("cached") else ""
        style = "bold green" if len(rows) > 1 and row["perplexity"] == best else None
        table.add_row(
            row["configuration"] + mark, f"{row['perplexity']:.4f}", f"{row['mean_nll']:.5f}", f"{row['tokens']:,}", _delta_text(row), style=style
        )
    console.print(table)


def print_history(records: list[dict], console, log_file: Path) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"Evaluations logged in {log_file}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    show_comment = any(record.get("comment") for record in records)
    columns = [("date", "left", 16), ("model", "left", 8), ("configuration", "left", 13), ("dataset", "left", 10),
               ("window", "right", 6), ("perplexity", "right", 10), ("tokens", "right", 6)]
    if show_comment:
        columns.append(("comment", "left", 8))
    for column, justify, width in columns:
        table.add_column(column, justify=justify, min_width=width, overflow="fold")
    for record in records:
        cells = [
            record.get("date", "").replace("T", " ")[:16],
            Path(record.get("model", "")).name,
            record.get("configuration", ""),
            Path(record.get("dataset", "")).name,
            f"{record.get('max_length', '')}/{record.get('stride', '')}",
            _number(record.get("perplexity", "")),
            record.get("tokens", ""),
        ]
        table.add_row(*cells, *([record.get("comment", "")] if show_comment else []))
    console.print(table)


def _number(text: str) -> str:
    try:
        return f"{float(text):.4f}"
    except ValueError:
        return text
