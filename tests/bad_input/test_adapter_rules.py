"""The adapter rules of the shared pre-flight, one focused test each (the table tries them on every command).

- ranks: config r vs tensor ranks, A against B, rank_pattern honoured (PEFT's own adapters pass);
- NaN/Inf refused by the pre-flight with merge's rule, also for ``apply -i``'s ``add``;
- ``--lora NAME:1e999`` refused like ``inf``; ``--lora X --lora X`` refused by every command;
- a pickle that is not plain tensors: one line, never advising ``weights_only=False``.
"""

from __future__ import annotations

import json
import shutil

import pytest
from bad_input_table import Workspace, adapter, halve_rank, pickle_only, poison, with_config
from lorakit_testing import make_peft_adapter

from lorakit.errors import AdapterError, UsageError
from lorakit.store.adapters import read_adapter


@pytest.fixture
def ws(tmp_path, lorakit_home, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir) -> Workspace:
    return Workspace(tmp_path, lorakit_home, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_config_rank_must_match_the_tensors(ws):
    adapter("r16", config=with_config(r=16))(ws)
    with pytest.raises(AdapterError, match=r"says r=16 but its tensors have rank 4"):
        read_adapter(ws.tmp / "r16")


def test_a_and_b_must_agree_on_the_rank(ws):
    adapter("mismatch", tensors=halve_rank)(ws)
    with pytest.raises(AdapterError, match=r"lora_A has rank 2 .* but lora_B has rank 4"):
        read_adapter(ws.tmp / "mismatch")


def test_rank_pattern_is_honoured(tiny_model_dir, tmp_path):
    """PEFT's own adapter with per-module ranks passes; the same tensors with the pattern removed do not."""
    made = make_peft_adapter(tiny_model_dir, tmp_path / "patterned", r=4, rank_pattern={"v_proj": 2}, alpha_pattern={"v_proj": 4})
    info = read_adapter(made)
    assert {shape[0] for key, shape in info.shapes.items() if "v_proj.lora_A" in key} == {2}
    config = json.loads((made / "adapter_config.json").read_text())
    (made / "adapter_config.json").write_text(json.dumps({**config, "rank_pattern": {}}))
    with pytest.raises(AdapterError, match=r"adapter_config.json says r=4 but its tensors have rank 2 .*v_proj"):
        read_adapter(made)


def test_wrong_rank_is_refused_before_any_weight_loads(run_cli, ws, monkeypatch):
    from lorakit.loaders import session

    def no_load(*args, **kwargs):
        raise AssertionError("the base was loaded")

    monkeypatch.setattr(session.Session, "reload_base", no_load)
    adapter("r16", config=with_config(r=16))(ws)
    code, _, err = run_cli("apply", str(ws.model), "--lora", str(ws.tmp / "r16"))
    assert code == 1 and "says r=16" in _one_error_line(err)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_like_merge_refuses_them(ws, value):
    from lorakit.store.adapter_checks import check_finite

    adapter("bad", tensors=poison("lora_B", value))(ws)
    info = read_adapter(ws.tmp / "bad")  # headers only: fine
    with pytest.raises(AdapterError, match=r"holds NaN or Inf values \(in base_model.model.model.layers.0"):
        check_finite(info)
    check_finite(read_adapter(ws.lora))  # a healthy adapter passes


def test_merge_names_the_adapter_not_the_merged_tensor(run_cli, ws):
    adapter("nan", tensors=poison("lora_B", float("nan")))(ws)
    code, _, err = run_cli("merge", str(ws.model), "--lora", str(ws.tmp / "nan"), "--output", str(ws.tmp / "out"))
    line = _one_error_line(err)
    assert code == 1 and "adapter 'nan' holds NaN or Inf values" in line and not (ws.tmp / "out").exists()


def test_interactive_add_uses_the_same_rules(run_cli, ws):
    adapter("nan", tensors=poison("lora_A", float("nan")))(ws)
    script = f"add {ws.tmp / 'nan'}\nadd {ws.lora}\nadd {ws.lora2}:1e999\nweight tiny-lora inf\nlist\nquit\n"
    code, out, err = run_cli("apply", str(ws.model), "--lora", str(ws.lora), "--no-probe", "-i", input=script)
    assert code == 0, err
    assert "error: adapter 'nan' holds NaN or Inf values" in out
    assert f"error: '{ws.lora}' is already attached as tiny-lora; change its weight with: weight tiny-lora W" in out
    assert "error: --lora" in out and "1e999' is not a finite number" in out
    assert "error: weight: the weight 'inf' is not a finite number" in out
    assert "tiny-lora  weight 1" in out and "added" not in out


@pytest.mark.parametrize("text", ["mylora:1e999", "mylora:-1e400", "mylora:inf", "mylora:nan"])
def test_weights_must_be_finite_numbers(text):
    from lorakit.store.lora_spec import parse_lora

    with pytest.raises(UsageError, match="not a finite number|is not a number"):
        parse_lora(text)


def test_weights_option_of_merge_must_be_finite():
    from lorakit.commands.merge import apply_weights

    with pytest.raises(UsageError, match="not a finite number"):
        apply_weights(["a"], "1e999")


@pytest.mark.parametrize("argv", [
    ["generate", "{model}", "--lora", "{lora}", "--lora", "{lora}", "--prompt", "x"],
    ["apply", "{model}", "--lora", "{lora}:0.5", "--lora", "{lora}"],
    ["eval", "{model}", "--lora", "{lora}", "--lora", "{lora}", "--dataset", "{tmp}/t.txt"],
    ["merge", "{model}", "--lora", "{lora}", "--lora", "{lora}", "--output", "{tmp}/o"],
    ["merge", "--adapters-only", "{lora}", "{lora}", "--output", "{tmp}/o"],
])
def test_the_same_lora_twice_is_refused_by_every_command(run_cli, ws, argv):
    (ws.tmp / "t.txt").write_text("words " * 50)
    paths = ws.paths()
    code, _, err = run_cli(*[arg.format(**paths) for arg in argv])
    line = _one_error_line(err)
    assert code == 2 and "twice" in line and "give it once with the weight you want" in line


def test_two_folders_with_one_name_are_still_fine(run_cli, ws):
    """The rule is about one folder named twice: two adapters called alike get NAME and NAME-2."""
    other = ws.tmp / "elsewhere" / ws.lora.name
    shutil.copytree(ws.lora2, other)
    code, out, err = run_cli("apply", str(ws.model), "--lora", str(ws.lora), "--lora", str(other), "--no-probe", "--json")
    assert code == 0, err
    assert [lora["name"] for lora in json.loads(out)["loras"]] == ["tiny-lora", "tiny-lora-2"]


def test_a_pickle_with_code_is_one_line_and_never_advises_weights_only_false(run_cli, ws):
    pickle_only(evil=True)(ws)
    for argv in (["apply", str(ws.model)], ["merge", str(ws.model), "--output", str(ws.tmp / "out")]):
        code, out, err = run_cli(*argv, "--lora", str(ws.tmp / "evil"), "--allow-pickle")
        line = _one_error_line(err)
        assert code == 1 and len(err.strip().splitlines()) == 1 and len(line) < 300, err
        assert "holds more than plain tensors (it references print)" in line
        assert "weights_only" not in err and "a pickle ran code" not in out + err


def test_the_error_boundary_never_repeats_torchs_advice():
    from lorakit.output.explain import translate

    text = translate(RuntimeError("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed"))
    assert "weights_only" not in text and "more than plain tensors" in text
