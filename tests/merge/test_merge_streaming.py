"""The streaming writer: unchanged tensors keep their exact bytes and dtype, multi-shard inputs and
outputs, and a merge without verification that never imports transformers or PEFT."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from merge_helpers import (  # noqa: F401  (fixtures)
    _adapter,
    adapters_dir,
    one_torch_thread,
    other_base_adapter_dir,
    peft_merged,
    tied_head_adapter_dir,
    tied_model_dir,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lorakit.store.safetensors_header import read_header


def _stored(path) -> dict[str, tuple[str, list[int], bytes]]:
    """Every tensor of a safetensors file as (dtype, shape, raw bytes), read straight from the file."""
    raw = path.read_bytes()
    start = 8 + int.from_bytes(raw[:8], "little")
    return {name: (info["dtype"], info["shape"], raw[start + info["data_offsets"][0]:start + info["data_offsets"][1]])
            for name, info in read_header(path).items()}


def _all_stored(folder) -> dict:
    found = {}
    for file in sorted(folder.glob("*.safetensors")):
        found.update(_stored(file))
    return found


def test_unchanged_tensors_keep_their_bytes(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    out = tmp_path / "merged"
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--output", str(out), "--no-verify")
    assert code == 0, err
    before, after = _stored(tiny_model_dir / "model.safetensors"), _stored(out / "model.safetensors")
    assert list(after) == list(before)  # same tensors, same order
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == sorted(f"model.layers.{i}.self_attn.{p}_proj.weight" for i in range(2) for p in "qv")
    assert all(after[name][:2] == before[name][:2] for name in before)  # dtype and shape everywhere


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_raw_copy_keeps_every_dtype(tmp_path, monkeypatch, kernel_copy):
    """Tensors of every kind pass through untouched, with copy_file_range or without it (another filesystem)."""
    import os

    from lorakit.merging.checkpoint import open_checkpoint
    from lorakit.merging.hf_writer import write_hf_weights
    from lorakit.merging.plan import MergePlan, OutTensor

    tensors = {
        "a.f32": torch.randn(7, 5), "b.bf16": torch.randn(3, 9).to(torch.bfloat16), "c.f16": torch.randn(11).to(torch.float16),
        "d.i64": torch.arange(13, dtype=torch.int64), "e.u8": torch.arange(200, dtype=torch.uint8), "f.bool": torch.rand(17) > 0.5,
        "g.empty": torch.zeros(0, 4), "h.scalar": torch.tensor(3.5),
    }
    (tmp_path / "base").mkdir()
    save_file(tensors, tmp_path / "base" / "model.safetensors", metadata={"format": "pt"})
    if not kernel_copy:
        def refuse(*args, **kwargs):
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    source = open_checkpoint(tmp_path / "base")
    plan = MergePlan([OutTensor(name, name, source.shape(name), source.dtype(name)) for name in source.names()])
    (tmp_path / "out").mkdir()
    report = write_hf_weights(plan, source, tmp_path / "out", max_shard_bytes=200)  # several shards
    assert len(report.files) > 1
    assert _all_stored(tmp_path / "out") == _stored(tmp_path / "base" / "model.safetensors")
    loaded = {}
    for file in report.files:
        loaded.update(load_file(tmp_path / "out" / file))
    assert loaded.keys() == tensors.keys()
    assert all(loaded[name].dtype == tensors[name].dtype and torch.equal(loaded[name], tensors[name]) for name in tensors)


def test_output_dtype_converts_floats_only(tmp_path):
    from lorakit.merging.checkpoint import open_checkpoint
    from lorakit.merging.hf_writer import write_hf_weights
    from lorakit.merging.plan import MergePlan, OutTensor, _out_dtype

    tensors = {"w": torch.randn(6, 4), "ids": torch.arange(5, dtype=torch.int64), "h": torch.randn(3).to(torch.float16)}
    (tmp_path / "base").mkdir()
    save_file(tensors, tmp_path / "base" / "model.safetensors")
    source = open_checkpoint(tmp_path / "base")
    plan = MergePlan([OutTensor(name, name, source.shape(name), _out_dtype(source.dtype(name), "BF16")) for name in source.names()])
    (tmp_path / "out").mkdir()
    write_hf_weights(plan, source, tmp_path / "out", max_shard_bytes=10**9)
    out = load_file(tmp_path / "out" / "model.safetensors")
    assert out["w"].dtype == out["h"].dtype == torch.bfloat16 and torch.equal(out["w"], tensors["w"].to(torch.bfloat16))
    assert out["ids"].dtype == torch.int64 and torch.equal(out["ids"], tensors["ids"])


def test_multi_shard_input_and_output(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    """A base saved in several shards merges to the same tensors as the single-file base; the index is exact."""
    from transformers import AutoModelForCausalLM

    sharded_base = tmp_path / "sharded-base"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).save_pretrained(sharded_base, max_shard_size="100KB")
    for path in tiny_model_dir.iterdir():
        if path.is_file() and not path.name.endswith(".safetensors"):
            shutil.copy2(path, sharded_base / path.name)
    assert len(list(sharded_base.glob("model-*.safetensors"))) > 2
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--output", str(whole), "--no-verify")
    assert code == 0, err
    code, out, err = run_cli("merge", str(sharded_base), "--lora", str(tiny_adapter_dir), "--output", str(sharded), "--max-shard-size", "100KB", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["verification"]["max_abs_logit_diff"] <= 1e-4 and report["updated_tensors"] == 4

    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == report["shards"] == sorted(path.name for path in sharded.glob("model-*.safetensors"))
    size = 0
    for file in files:
        with safe_open(sharded / file, framework="pt") as handle:
            assert sorted(handle.keys()) == sorted(name for name, where in index["weight_map"].items() if where == file)
            size += sum(handle.get_tensor(name).numel() * handle.get_tensor(name).element_size() for name in handle.keys())
    assert index["metadata"]["total_size"] == size
    ours, reference = _all_stored(sharded), _stored(whole / "model.safetensors")
    assert ours.keys() == reference.keys() and all(ours[name] == reference[name] for name in reference)


def test_fp32_merge_is_bit_identical_to_peft_for_any_scaling(run_cli, tiny_model_dir, adapters_dir, tmp_path):
    """alpha / r = 8 / 3 and a weight of 0.7: PEFT scales B @ A, then adds it; a fused add would differ in the last bit."""
    adapter = _adapter(tiny_model_dir, adapters_dir / "odd-scaling", seed=11, r=3, alpha=8, targets=("q_proj", "v_proj", "up_proj", "down_proj"))
    out = tmp_path / "merged"
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", f"{adapter}:0.7", "--output", str(out), "--no-verify")
    assert code == 0, err
    ours, theirs = load_file(out / "model.safetensors"), peft_merged(tiny_model_dir, [(adapter, 0.7)]).state_dict()
    assert ours.keys() == theirs.keys()
    assert [name for name in ours if not torch.equal(ours[name], theirs[name])] == []


def test_fit_check_from_checkpoint_headers(tiny_model_dir, tiny_adapter_dir, other_base_adapter_dir, tied_model_dir, tied_head_adapter_dir):
    from lorakit.merging.checkpoint import safetensors_shapes
    from lorakit.store.adapters import read_adapter
    from lorakit.store.preflight import check_adapter_fits, fits_checkpoint

    shapes = safetensors_shapes(tiny_model_dir)
    assert fits_checkpoint(read_adapter(tiny_adapter_dir), shapes)
    assert not fits_checkpoint(read_adapter(other_base_adapter_dir), shapes)  # the full check names the difference
    tied = read_adapter(tied_head_adapter_dir)
    assert not fits_checkpoint(tied, safetensors_shapes(tied_model_dir))  # lm_head is not stored: ask the model
    assert check_adapter_fits(tied, tied_model_dir, tensor_shapes=safetensors_shapes(tied_model_dir)) == []


def test_merge_without_verification_imports_no_transformers(tiny_model_dir, tiny_adapter_dir, tmp_path):
    """The streaming merge needs torch and safetensors only: transformers and PEFT cost seconds to import."""
    script = (
        "import sys\n"
        "from lorakit.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
        "print(sorted(name for name in ('transformers', 'peft', 'accelerate') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "merge", str(tiny_model_dir), "--lora", str(tiny_adapter_dir),
                           "--output", str(tmp_path / "out"), "--no-verify"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "model.safetensors").is_file()
