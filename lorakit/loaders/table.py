"""The README's loader table, generated from the capability records of the loaders lorakit ships.

``python -m lorakit.loaders.table`` prints it; ``--write README.md`` replaces the text between
``<!-- loaders-table:start -->`` and ``<!-- loaders-table:end -->``; ``--check README.md`` exits 1
when the README is out of date (``tests/loaders/test_loader_table.py`` does the same check).

"Shipped" means the built-in plugins plus the plugin packages of the repository the README belongs
to (``plugins/*/pyproject.toml`` beside it, read for their ``lorakit`` entry points), so a
third-party plugin installed here does not leak into the table, and nothing here names a backend.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

START = "<!-- loaders-table:start -->"
END = "<!-- loaders-table:end -->"

_REMOVAL = {"fast": "yes, instantly", "reload": "yes, by reloading the base", "unsupported": "no"}


def shipped_plugin_names(repo: Path) -> list[str]:
    """The ``lorakit`` entry-point names declared by ``repo/plugins/*/pyproject.toml``."""
    names = []
    for project in sorted(Path(repo).glob("plugins/*/pyproject.toml")):
        data = tomllib.loads(project.read_text(encoding="utf-8"))
        names += sorted(data.get("project", {}).get("entry-points", {}).get("lorakit", {}))
    return names


def documented_loaders(repo: Path = Path(".")) -> list:
    """The shipped loaders, the default first, then built-ins, then the plugin packages' (by name).

    A plugin package of the repository that is not installed is named in an ``ImportError``.
    """
    from lorakit.loaders.registry import DEFAULT_LOADER
    from lorakit.plugin.host import registered_loaders
    from lorakit.plugin.manager import get_plugin_manager

    wanted = shipped_plugin_names(repo)
    pm = get_plugin_manager(only=wanted)
    missing = [name for name in wanted if not pm.has_plugin(name)]
    if missing:
        raise ImportError(f"the plugin packages {', '.join(missing)} of {Path(repo).resolve()} are not installed; install them to render the table")
    loaders = registered_loaders(pm)
    builtin = {loader.name for loader in registered_loaders(get_plugin_manager(load_entry_points=False)).values()}
    return sorted(loaders.values(), key=lambda loader: (loader.name != DEFAULT_LOADER, loader.name not in builtin, loader.name))


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
    parser = argparse.ArgumentParser(prog="python -m lorakit.loaders.table", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="README", type=Path, help="replace the table between the markers in README")
    group.add_argument("--check", metavar="README", type=Path, help="exit 1 when README's table is out of date")
    args = parser.parse_args(argv)
    readme = args.write or args.check
    table = render_markdown(documented_loaders(readme.resolve().parent if readme else Path(".")))
    if args.write:
        from lorakit.store.atomic import atomic_write_text

        atomic_write_text(args.write, replace_table(args.write.read_text(encoding="utf-8"), table))
        print(f"updated the loader table in {args.write}", file=sys.stderr)
    elif args.check:
        if current_table(args.check.read_text(encoding="utf-8")) != table:
            print(f"{args.check}: the loader table is out of date; run python -m lorakit.loaders.table --write {args.check}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
