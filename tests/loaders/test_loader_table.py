"""The README's loader table is generated from the capability records and must stay in sync."""

from pathlib import Path

import pytest

from lorakit.api import Capabilities, Loader
from lorakit.loaders.table import (
    END,
    START,
    current_table,
    documented_loaders,
    main,
    render_markdown,
    replace_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"


class _Fake(Loader):
    name = "fake"
    capabilities = Capabilities(max_loras=None, per_lora_weights=True, removal="reload", train=True, quantizations=())


def test_rows_come_from_the_capability_records():
    table = render_markdown([_Fake()])
    assert "| `fake` | any number | yes | yes, by reloading the base | no | yes | fp32 | - | cpu |" in table


def test_replace_table_keeps_everything_else():
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    new = replace_table(text, "| new |\n")
    assert new == f"intro\n{START}\n| new |\n{END}\noutro\n"
    assert current_table(new) == "| new |\n"
    with pytest.raises(ValueError, match="markers"):
        replace_table("no markers here", "x")


def test_check_and_write_commands(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{START}\n{END}\n")
    (tmp_path / "plugins").symlink_to(README.parent / "plugins")  # the same shipped plugin packages
    try:
        documented_loaders(tmp_path)
    except ImportError as error:
        pytest.skip(str(error))
    assert main(["--check", str(readme)]) == 1
    assert main(["--write", str(readme)]) == 0
    assert main(["--check", str(readme)]) == 0


def test_readme_table_is_up_to_date():
    try:
        loaders = documented_loaders(README.parent)
    except ImportError as error:
        pytest.skip(str(error))
    text = README.read_text(encoding="utf-8")
    assert current_table(text) is not None, f"README.md lacks the {START} / {END} markers"
    assert current_table(text) == render_markdown(loaders), "README.md's loader table is stale: run python -m lorakit.loaders.table --write README.md"
