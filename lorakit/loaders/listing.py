"""``lorakit loaders`` as plain text designed for an 80-column terminal.

Two narrow tables instead of one wide one (nine columns never fit: names and reasons were cut or
wrapped over many rows): what each backend can do with LoRAs, then what it loads, and under them,
why a backend cannot run here, wrapped with an indent. Text goes to stdout (it is data); the
complete records are ``lorakit loaders --json``.
"""

from __future__ import annotations

import textwrap

WIDTH = 80


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]


def render_listing(records: list[dict], width: int = WIDTH) -> str:
    if not records:
        return "No loader backend is registered (see `lorakit plugins --all`).\n"
    lora_rows = [(
        rec["name"],
        "any" if rec["max_loras"] is None else str(rec["max_loras"]),
        _yes(rec["per_lora_weights"]),
        rec["removal"],
        _yes(rec["merge"]),
        _yes(rec["train"]),
        _yes(rec["available"]),
    ) for rec in records]
    load_rows = [(
        rec["name"],
        ", ".join(rec["precisions"]) or "-",
        ", ".join(rec["quantizations"]) or "-",
        ", ".join(rec["devices"]) or "-",
    ) for rec in records]
    lines = _table(("loader", "LoRAs", "weights", "removal", "merge", "train", "here"), lora_rows)
    lines.append("")
    lines += _table(("loader", "precisions", "quantized", "devices"), load_rows)
    unavailable = [rec for rec in records if not rec["available"]]
    if unavailable:
        lines.append("")
        for rec in unavailable:
            lines += textwrap.wrap(f"{rec['name']} cannot run here: {rec['reason'] or 'unavailable'}", width - 1, subsequent_indent="  ")
    lines += ["", "removal: fast | reload (the base) | unsupported.  Full records: --json"]
    return "\n".join(lines) + "\n"
