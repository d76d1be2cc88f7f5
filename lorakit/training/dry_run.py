"""``lorakit train --dry-run``: show exactly what would be trained, then stop.

- :func:`print_dry_run` writes a few examples to stderr with the trained tokens marked (green on a
  terminal; between ``[[`` and ``]]`` when stderr is not a terminal, so logs and pipes show them
  too), then the token counts (min/mean/max, how many rows the cutoff cut) and any warnings.
- :func:`write_dry_run_json` writes every example as one JSON line ``{"text", "input_ids",
  "labels"}`` on stdout, for scripts.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from lorakit.training.masking import IGNORE_INDEX

TRAINED_STYLE = "bold green"
MASKED_STYLE = "dim"
PLAIN_MARKS = ("[[", "]]")


def token_groups(example) -> list[tuple[bool, list[int]]]:
    """Consecutive runs of trained / masked tokens."""
    groups: list[tuple[bool, list[int]]] = []
    for token, label in zip(example.input_ids, example.labels):
        trained = label != IGNORE_INDEX
        if groups and groups[-1][0] == trained:
            groups[-1][1].append(token)
        else:
            groups.append((trained, [token]))
    return groups


def marked_text(example, tokenizer, plain: bool):
    """A rich Text of the example, trained runs styled (or bracketed when ``plain``)."""
    from rich.text import Text

    text = Text()
    for trained, ids in token_groups(example):
        piece = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if trained and plain:
            text.append(PLAIN_MARKS[0] + piece + PLAIN_MARKS[1])
        else:
            text.append(piece, style=TRAINED_STYLE if trained else MASKED_STYLE)
    return text


def pick_samples(examples: Sequence, count: int) -> list[int]:
    """The first example, the last, and evenly spaced ones between (so long runs show variety)."""
    if count <= 0 or not examples:
        return []
    if len(examples) <= count:
        return list(range(len(examples)))
    step = (len(examples) - 1) / (count - 1) if count > 1 else 0
    return sorted({round(index * step) for index in range(count)})


def stats_table(stats):
    from rich.table import Table

    table = Table(title="training data", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("format", stats.format_name)
    table.add_row("examples", str(stats.count))
    table.add_row("tokens per example (min / mean / max)", f"{stats.min_tokens} / {stats.mean_tokens:.1f} / {stats.max_tokens}")
    table.add_row("tokens in all examples", str(stats.total_tokens))
    table.add_row("trained tokens", str(stats.trained_tokens))
    if stats.kind == "raw":
        table.add_row("files / blocks kept / blocks dropped", f"{stats.files} / {stats.blocks_kept} / {stats.blocks_dropped}")
        table.add_row("EOS added at hard cuts", str(stats.eos_added))
    else:
        table.add_row("rows cut by --cutoff-len", f"{stats.truncated} of {stats.rows}")
        table.add_row("rows skipped (nothing to train)", str(stats.skipped_untrained))
    return table


def print_dry_run(examples: Sequence, stats, tokenizer, samples: int = 3, console=None) -> None:
    if console is None:
        from lorakit.output.console import err_console

        console = err_console()
    plain = not console.is_terminal or console.no_color
    legend = "trained text is between [[ and ]]" if plain else "trained tokens in green, masked tokens dimmed"
    console.print(f"Dry run: {len(examples)} examples; {legend}.", markup=False, highlight=False)
    for index in pick_samples(examples, samples):
        example = examples[index]
        trained = sum(1 for label in example.labels if label != IGNORE_INDEX)
        where = f" ({example.source})" if getattr(example, "source", "") else ""
        console.rule(f"example {index + 1}{where}: {len(example.input_ids)} tokens, {trained} trained", style="cyan")
        console.print(marked_text(example, tokenizer, plain), markup=False, highlight=False)
    console.rule(style="cyan")
    console.print(stats_table(stats))
    for warning in stats.warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
    console.print("Dry run: nothing was trained.", markup=False, highlight=False)


def write_dry_run_json(examples: Sequence, stream=None) -> None:
    stream = stream or sys.stdout
    for example in examples:
        stream.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    stream.flush()
