"""The README's loader table, generated from the loaders' capability records.

``python -m lorakit.loader_table`` prints it; ``--write README.md`` replaces the text between
``<!-- loaders-table:start -->`` and ``<!-- loaders-table:end -->``; ``--check README.md`` exits 1
when the README is out of date (``tests/loaders/test_loader_table.py`` does the same check).

The table documents the four backends lorakit ships (two built in, two plugin packages in
``plugins/``), so it does not depend on what happens to be installed beyond those packages.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

START = "<!-- loaders-table:start -->"
END = "<!-- loaders-table:end -->"

DOCUMENTED_LOADERS = (
    ("lorakit.plugins.transformers_loader", "TransformersLoader", "lorakit"),
    ("lorakit_exllama.loader", "ExLlamaLoader", "lorakit-exllama (plugins/exllama)"),
    ("lorakit.plugins.autogptq_loader", "AutoGPTQLoader", "lorakit"),
    ("lorakit_gptq_monkeypatch.loader", "GPTQMonkeypatchLoader", "lorakit-gptq-monkeypatch (plugins/gptq_monkeypatch)"),
)
_REMOVAL = {"fast": "yes, instantly", "reload": "yes, by reloading the base", "unsupported": "no"}


def documented_loaders() -> list:
    """Instances of the documented loaders; a missing plugin package is named in the error."""
    loaders = []
    for module_name, class_name, package in DOCUMENTED_LOADERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ImportError(f"{module_name} is not importable ({error}); install {package} to render the table") from error
        loaders.append(getattr(module, class_name)())
    return loaders


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def render_markdown(loaders) -> str:
    """A Markdown table, one row per loader, from ``loader.name`` and ``loader.capabilities``."""
    header = ("Loader", "LoRAs at once", "Per-LoRA weights", "Remove a LoRA", "Merge", "Train", "Precision", "Quantized weights", "Devices")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for loader in loaders:
        caps = loader.capabilities
        row = (
            f"`{loader.name}`",
            "any number" if caps.max_loras is None else str(caps.max_loras),
            _yes(caps.per_lora_weights),
            _REMOVAL[caps.removal],
            _yes(caps.merge),
            _yes(caps.train),
            ", ".join(caps.precisions),
            ", ".join(caps.quantizations) or "-",
            ", ".join(caps.devices),
        )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def current_table(text: str) -> str | None:
    """The text between the markers, or ``None`` when they are missing."""
    start, end = text.find(START), text.find(END)
    if start == -1 or end == -1 or end < start:
        return None
    return text[start + len(START): end].strip("\n") + "\n"


def replace_table(text: str, table: str) -> str:
    start, end = text.find(START), text.find(END)
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"the README has no {START} ... {END} markers")
    return text[: start + len(START)] + "\n" + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorakit.loader_table", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="README", type=Path, help="replace the table between the markers in README")
    group.add_argument("--check", metavar="README", type=Path, help="exit 1 when README's table is out of date")
    args = parser.parse_args(argv)
    table = render_markdown(documented_loaders())
    if args.write:
        from lorakit.atomic import atomic_write_text

        atomic_write_text(args.write, replace_table(args.write.read_text(encoding="utf-8"), table))
        print(f"updated the loader table in {args.write}", file=sys.stderr)
    elif args.check:
        if current_table(args.check.read_text(encoding="utf-8")) != table:
            print(f"{args.check}: the loader table is out of date; run python -m lorakit.loader_table --write {args.check}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
