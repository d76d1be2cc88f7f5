"""The architecture of docs/architecture.md holds: import-linter's contracts (pyproject.toml) pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The plugin packages are checked from this checkout (not from an installed copy), the fixture too.
PLUGIN_FOLDERS = [REPO / "plugins" / "gptq_monkeypatch", REPO / "plugins" / "exllama", REPO / "plugins" / "vllm", REPO / "tests" / "fixture_plugin"]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(lint).exists():
        pytest.fail("lint-imports is not installed: pip install import-linter (it is in the test extra)")
    path = os.pathsep.join([str(REPO), *map(str, PLUGIN_FOLDERS), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and " KEPT" in done.stdout
