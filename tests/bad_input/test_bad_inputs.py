"""Every bad input, every command: non-zero exit, at most three lines, no traceback, the problem named,
and the watched folders byte for byte unchanged with nothing left behind.

The cases are the ``CASES`` lists of ``bad_cases_*.py`` beside this file (see ``bad_input_table.py``
for what a case is and how to add a command's cases).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from bad_input_snapshot import changes, snapshot
from bad_input_table import Case

MODULES = sorted(path.stem for path in Path(__file__).parent.glob("bad_cases_*.py"))
CASES: list[Case] = [item for module in MODULES for item in importlib.import_module(module).CASES]
MAX_LINES = 3


def test_the_table_is_large_and_has_no_duplicates():
    ids = [item.id for item in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len({tuple(item.argv) + tuple(sorted(item.env.items())) + (item.setup is not None and item.id,) for item in CASES}) >= 100
    commands = {item.argv[0] for item in CASES}
    assert {"download", "train", "generate", "apply", "eval", "merge", "loaders", "plugins"} <= commands


def check_failure(item: Case, code: int, out: str, err: str) -> str:
    """The contract for a bad input; returns the Error line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, f"exit 0\n{err}"
    if item.code is not None:
        assert code == item.code, f"exit {code}, expected {item.code}\n{err}"
    assert "Traceback" not in err + out, err
    assert 1 <= len(lines) <= MAX_LINES, f"{len(lines)} lines on stderr:\n{err}"
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, err
    missing = [fragment for fragment in item.fragments() if fragment not in errors[0]]
    assert not missing, f"{errors[0]!r} does not name {missing}"
    return errors[0]


@pytest.mark.parametrize("item", CASES, ids=[item.id for item in CASES])
def test_bad_input(item: Case, workspace, run_cli, request):
    reason = item.skip_if() if item.skip_if else None
    if reason:
        pytest.skip(reason)
    for name in item.fixtures:
        request.getfixturevalue(name)
    if item.setup is not None:
        item.setup(workspace)
    paths = workspace.paths()
    argv = [arg.format(**paths) for arg in item.argv]
    env = {key: value.format(**paths) for key, value in item.env.items()}
    before = snapshot(workspace.watched())
    code, out, err = run_cli(*argv, input=item.stdin, env=env or None)
    check_failure(item, code, out, err)
    assert changes(before, snapshot(workspace.watched())) == []
