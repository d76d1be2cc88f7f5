"""lorakit's own test fixtures (tiny model, adapters, isolated home, CLI runner) and the shared GPTQ ones.

The plugin lives in the lorakit repository; its tests reuse ``tests/conftest.py`` (loaded under
another module name, so pytest's own ``conftest`` stays untouched), ``tests/lorakit_testing.py`` and ``tests/gptq_fixtures.py``.
"""

import importlib.util
import sys
from pathlib import Path

REPO_TESTS = Path(__file__).resolve().parents[3] / "tests"
sys.path.insert(0, str(REPO_TESTS))

_spec = importlib.util.spec_from_file_location("lorakit_repo_conftest", REPO_TESTS / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _root
_spec.loader.exec_module(_root)

tiny_model_dir = _root.tiny_model_dir
tiny_adapter_dir = _root.tiny_adapter_dir
tiny_adapter2_dir = _root.tiny_adapter2_dir
smollm2_dir = _root.smollm2_dir
lorakit_home = _root.lorakit_home
run_cli = _root.run_cli

from gptq_fixtures import smollm2_gptq_dir, tiny_gptq_dir  # noqa: F401
