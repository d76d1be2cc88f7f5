"""Target resolution per family on meta-device records (no weights, no training) and its CLI refusals."""

from __future__ import annotations

import json

import pytest
from conftest_families import families_root, family_dirs, one_thread  # noqa: F401  (fixtures)

from lorakit.errors import UsageError
from lorakit.store.preflight import base_module_shapes
from lorakit.training.targets import resolve_targets

EXPERTS = ["mlp.experts.down_proj", "mlp.experts.gate_up_proj"]


def _resolve(family, root, targets, experts="auto"):
    return resolve_targets(targets, experts, base_module_shapes(family_dirs(family, root).base))


def test_phi3_fused_projections_resolve_and_are_named(families_root):
    targets = _resolve("phi3", families_root, ["q_proj", "v_proj", "up_proj"])
    assert targets.modules == ["gate_up_proj", "qkv_proj"] and targets.parameters == []
    assert any("q_proj is part of the fused qkv_proj" in note for note in targets.notes)
    assert _resolve("phi3", families_root, ["all-linear"]).modules == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]


@pytest.mark.parametrize("family", ["mixtral", "qwen2-moe", "qwen3-moe"])
def test_experts_are_never_skipped_silently(family, families_root):
    with pytest.raises(UsageError) as error:
        _resolve(family, families_root, ["all-linear"])
    assert "mlp.experts.gate_up_proj" in error.value.one_line() and "--experts target" in error.value.one_line()
    assert _resolve(family, families_root, ["all-linear"], "target").parameters == EXPERTS
    skipped = _resolve(family, families_root, ["all-linear"], "skip")
    assert skipped.parameters == [] and any("skipped" in note for note in skipped.notes)
    attention = _resolve(family, families_root, ["q_proj", "v_proj"])  # no MLP asked for: nothing is skipped behind the user's back
    assert attention.modules == ["q_proj", "v_proj"] and attention.parameters == []


def test_named_expert_projections(families_root):
    mixtral = _resolve("mixtral", families_root, ["q_proj", "w2"], "target")  # Mixtral's checkpoint names work too
    assert mixtral.modules == ["q_proj"] and mixtral.parameters == ["mlp.experts.down_proj"]
    qwen = _resolve("qwen2-moe", families_root, ["gate_proj"], "target")  # the shared expert is a plain layer, the routed ones fused
    assert qwen.modules == ["gate_proj"] and qwen.parameters == ["mlp.experts.gate_up_proj"]
    with pytest.raises(UsageError, match="names no expert projection"):
        _resolve("mixtral", families_root, ["q_proj"], "target")


@pytest.mark.parametrize("family", ["qwen2", "gemma2", "mixtral"])
def test_a_name_that_matches_nothing_is_named(family, families_root):
    with pytest.raises(UsageError) as error:
        _resolve(family, families_root, ["q_proj", "wq"])
    assert "--target-modules wq matches no layer" in error.value.one_line() and "o_proj" in error.value.one_line()


def test_cli_refusals_are_one_line_and_write_nothing(families_root, run_cli, lorakit_home, tmp_path, one_thread):
    dirs = family_dirs("qwen2-moe", families_root)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"instruction": "Say hi.", "output": "Hi."}] * 4))
    base = ("train", str(dirs.base), "--dataset", str(rows), "--name", "moe", "--target-modules", "all-linear")
    for extra, message in [((), "--experts target"), (("--experts", "target"), "--dropout 0"), (("--experts", "bogus"), "--experts")]:
        code, _, err = run_cli(*base, *extra)
        assert code == 2 and message in err and err.strip().count("\n") == 0, err
    assert not (lorakit_home / "loras" / "moe").exists()
