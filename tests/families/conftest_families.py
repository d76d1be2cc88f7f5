"""Session-wide builds for the family matrix: one tiny model and its adapters per family, built once.

Not a conftest.py (a second ``conftest`` module would shadow the root one): the test modules import
``family_dirs`` from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from family_models import MOE, build_family_model, make_family_adapter


@dataclass
class FamilyDirs:
    family: str
    base: Path
    lora: Path  # every linear layer, plus the experts' fused weights on MoE families
    attention_lora: Path  # attention only: what llama.cpp's converter takes on every family


_cache: dict[str, FamilyDirs] = {}


def family_dirs(family: str, root: Path) -> FamilyDirs:
    if family not in _cache:
        folder = root / family
        base = build_family_model(family, folder / "base")
        lora = make_family_adapter(base, folder / "lora", experts=family in MOE)
        attention = make_family_adapter(base, folder / "attention-lora", experts=False, seed=2, r=8, alpha=4,
                                        target_modules=["qkv_proj", "o_proj"] if family == "phi3" else ["q_proj", "k_proj", "v_proj", "o_proj"])
        _cache[family] = FamilyDirs(family, base, lora, attention)
    return _cache[family]


@pytest.fixture(scope="session")
def families_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("families")


@pytest.fixture
def one_thread():
    """Tiny models run far slower with 2 OpenMP threads on a busy 2-core machine; 1 is plenty."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
