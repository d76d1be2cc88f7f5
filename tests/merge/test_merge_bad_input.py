"""Bad input: one clear line each, the right exit code, and nothing left on disk."""

from __future__ import annotations

import json

import pytest
from merge_helpers import (  # noqa: F401  (fixtures)
    adapters_dir,
    no_leftovers,
    one_torch_thread,
    other_base_adapter_dir,
)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("Error:")]


def _fails(run_cli, *args, code=1, contains=""):
    got, out, err = run_cli("merge", *map(str, args))
    errors = _error_lines(err)
    assert got == code, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert contains in errors[0], errors[0]
    return errors[0]


def test_adapter_for_another_base(run_cli, tiny_model_dir, other_base_adapter_dir, tmp_path):
    _fails(run_cli, tiny_model_dir, "--lora", other_base_adapter_dir, "--output", tmp_path / "out", contains="does not fit")
    assert not (tmp_path / "out").exists() and no_leftovers(tmp_path) == []


def test_existing_output_needs_force(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", out, contains="already exists")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--output", str(out), "--force", "--no-verify")
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and not (out / "keep.txt").exists() and no_leftovers(tmp_path) == []


def test_force_never_replaces_an_input(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir):
    before = (tiny_model_dir / "model.safetensors").read_bytes()
    _fails(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", tiny_model_dir, "--force", contains="is one of this command's inputs")
    _fails(run_cli, "--adapters-only", tiny_adapter_dir, tiny_adapter2_dir, "--output", tiny_adapter2_dir, "--force", contains="inputs")
    assert (tiny_model_dir / "model.safetensors").read_bytes() == before and (tiny_adapter2_dir / "adapter_config.json").is_file()


def test_force_does_not_replace_a_file_with_a_folder(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    target = tmp_path / "out"
    target.write_text("a file")
    _fails(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", target, "--force", contains="is a file")
    assert target.read_text() == "a file"


def test_unwritable_output(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    _fails(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", blocker / "sub" / "out", contains="is a file, not a folder")
    assert blocker.read_text().startswith("a file")


def test_read_only_location(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes")
        _fails(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", locked / "out", contains="cannot write")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "args,contains",
    [
        (["--adapters-only", "A", "B", "--method", "average", "--output", "X"], "'average' is not one of"),
        (["--lora", "A", "--lora", "B", "--weights", "0.5", "--output", "X"], "--weights has 1 value(s) for 2 LoRA(s)"),
        (["--lora", "A:0.3", "--lora", "B", "--weights", "0.5,0.5", "--output", "X"], "already has a :WEIGHT"),
        (["--output", "X"], "give at least one --lora"),
        (["m1", "m2", "--lora", "A", "--output", "X"], "merge takes one MODEL"),
        (["--lora", "A", "--method", "svd", "--output", "X"], "apply to --adapters-only"),
        (["--lora", "A", "--max-shard-size", "lots", "--output", "X"], "is not a size"),
        (["--adapters-only", "A", "--format", "state_dict", "--output", "X"], "not to --adapters-only"),
    ],
)
def test_usage_errors(run_cli, tmp_path, args, contains):
    _fails(run_cli, *args, code=2, contains=contains)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lorakit-home"]


def test_methods_that_need_equal_ranks(run_cli, tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    _fails(run_cli, "--adapters-only", tiny_adapter_dir, tiny_adapter2_dir, "--method", "linear", "--output", tmp_path / "mix", code=2, contains="equal rank")
    assert not (tmp_path / "mix").exists() and no_leftovers(tmp_path) == []


def test_state_dict_refuses_other_architectures(run_cli, tmp_path):
    """Meta's layout is Llama's only; gguf-lora now takes Qwen2 and the other families (tests/families)."""
    from merge_helpers import _adapter
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path / "tiny-qwen"
    config = Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    adapter = _adapter(folder, tmp_path / "qwen-lora")
    _fails(run_cli, folder, "--lora", adapter, "--format", "state_dict", "--output", tmp_path / "meta", contains="Qwen2ForCausalLM")
    assert not (tmp_path / "meta").exists() and no_leftovers(tmp_path) == []


def test_pickle_only_adapter_is_refused_without_allow_pickle(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_adapter_dir, pickled)
    torch.save(load_file(pickled / "adapter_model.safetensors"), pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    _fails(run_cli, tiny_model_dir, "--lora", pickled, "--output", tmp_path / "out", contains="pickle")
    code, out, err = run_cli("merge", str(tiny_model_dir), "--lora", str(pickled), "--output", str(tmp_path / "out"), "--allow-pickle", "--json", "--no-verify")
    assert code == 0, err
    assert json.loads(out)["updated_tensors"] == 4
