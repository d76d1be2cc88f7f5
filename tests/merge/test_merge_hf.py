"""Merged HF folders equal PEFT's merge_and_unload, for plain, weighted, DoRA, rsLoRA, embedding and tied cases."""

from __future__ import annotations

import json

import pytest
import torch
from merge_helpers import (  # noqa: F401  (fixtures)
    adapters_dir,
    dora_adapter_dir,
    embedding_adapter_dir,
    logits,
    one_torch_thread,
    peft_merged,
    rslora_adapter_dir,
    tied_head_adapter_dir,
    tied_model_dir,
)
from safetensors.torch import load_file


def _merge(run_cli, *args):
    code, out, err = run_cli("merge", *map(str, args))
    assert code == 0, err
    return out, err


def _weights(folder):
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def test_merge_equals_peft_merge_and_unload(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    out = tmp_path / "merged"
    stdout, err = _merge(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", out, "--json")
    report = json.loads(stdout)
    reference = peft_merged(tiny_model_dir, [(tiny_adapter_dir, 1.0)])
    assert (logits(out) - logits(reference, tokenizer_dir=tiny_model_dir)).abs().max().item() <= 1e-5
    ours, theirs = _weights(out), reference.state_dict()
    assert set(ours) == set(theirs)
    assert max((ours[name] - theirs[name]).abs().max().item() for name in ours) <= 1e-6
    assert report["verification"]["max_abs_logit_diff"] <= 1e-4 and report["verification"]["argmax_agreement"] == 1.0
    assert "Verified" in err and sorted(p.name for p in out.iterdir()) == sorted(
        ["chat_template.jinja", "config.json", "generation_config.json", "lorakit_merge.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    )
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"


def test_two_weighted_adapters_and_weights_option(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    inline, listed = tmp_path / "inline", tmp_path / "listed"
    _merge(run_cli, tiny_model_dir, "--lora", f"{tiny_adapter_dir}:0.7", "--lora", f"{tiny_adapter2_dir}:-0.4", "--output", inline, "--no-verify")
    _merge(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--lora", tiny_adapter2_dir, "--weights", "0.7,-0.4", "--output", listed, "--no-verify")
    assert (inline / "model.safetensors").read_bytes() == (listed / "model.safetensors").read_bytes()
    reference = peft_merged(tiny_model_dir, [(tiny_adapter_dir, 0.7), (tiny_adapter2_dir, -0.4)])
    assert (logits(inline) - logits(reference, tokenizer_dir=tiny_model_dir)).abs().max().item() <= 1e-5


def test_sharded_output_with_index_reloads(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    _merge(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", whole, "--no-verify")
    _merge(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", sharded, "--max-shard-size", "100KB")
    shards = sorted(sharded.glob("model-*.safetensors"))
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(shards) >= 4 and not (sharded / "model.safetensors").exists()
    assert set(index["weight_map"].values()) == {shard.name for shard in shards}
    assert all(shard.stat().st_size <= 100_000 + 70_000 for shard in shards)  # a tensor larger than the limit gets its own shard
    tensors = _weights(sharded)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    assert set(index["weight_map"]) == set(tensors)
    assert torch.equal(logits(sharded), logits(whole))


def test_bf16_output(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    out = tmp_path / "bf16"
    stdout, _ = _merge(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", out, "--dtype", "bf16", "--json")
    assert {t.dtype for t in _weights(out).values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    check = json.loads(stdout)["verification"]
    assert 0 < check["max_abs_logit_diff"] <= check["tolerance"]  # bf16 rounding shows, within tolerance


def test_dora_matches_peft(run_cli, tiny_model_dir, dora_adapter_dir, tmp_path):
    out = tmp_path / "dora"
    stdout, _ = _merge(run_cli, tiny_model_dir, "--lora", f"{dora_adapter_dir}:0.6", "--output", out, "--json")
    reference = peft_merged(tiny_model_dir, [(dora_adapter_dir, 0.6)])
    assert (logits(out) - logits(reference, tokenizer_dir=tiny_model_dir)).abs().max().item() <= 1e-5
    assert json.loads(stdout)["verification"]["max_abs_logit_diff"] <= 1e-4


def test_rslora_with_patterns_matches_peft(run_cli, tiny_model_dir, rslora_adapter_dir, tmp_path):
    out = tmp_path / "rslora"
    _merge(run_cli, tiny_model_dir, "--lora", rslora_adapter_dir, "--output", out, "--no-verify")
    reference = peft_merged(tiny_model_dir, [(rslora_adapter_dir, 1.0)])
    assert (logits(out) - logits(reference, tokenizer_dir=tiny_model_dir)).abs().max().item() <= 1e-5


def test_embedding_lora_and_modules_to_save_match_peft(run_cli, tiny_model_dir, embedding_adapter_dir, tmp_path):
    out = tmp_path / "embedding"
    stdout, _ = _merge(run_cli, tiny_model_dir, "--lora", embedding_adapter_dir, "--output", out, "--json")
    reference = peft_merged(tiny_model_dir, [(embedding_adapter_dir, 1.0)])
    assert (logits(out) - logits(reference, tokenizer_dir=tiny_model_dir)).abs().max().item() <= 1e-5
    assert json.loads(stdout)["verification"]["max_abs_logit_diff"] <= 1e-4


def test_tied_embeddings_are_untied_when_the_head_changes(run_cli, tied_model_dir, tied_head_adapter_dir, tmp_path):
    """PEFT's merge_and_unload would change the shared tensor (embeddings too); the unmerged model does not."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "untied"
    stdout, _ = _merge(run_cli, tied_model_dir, "--lora", tied_head_adapter_dir, "--output", out, "--json")
    assert json.loads(stdout)["untied_embeddings"] is True
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    merged, base = _weights(out), _weights(tied_model_dir)
    assert "lm_head.weight" in merged and "lm_head.weight" not in base
    assert torch.equal(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tied_model_dir, dtype=torch.float32), str(tied_head_adapter_dir))
    assert (logits(out) - logits(unmerged, tokenizer_dir=tied_model_dir)).abs().max().item() <= 1e-5


def test_nan_in_an_adapter_aborts_without_output(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    import shutil

    from safetensors.torch import save_file

    broken = tmp_path / "nan-lora"
    shutil.copytree(tiny_adapter_dir, broken)
    state = load_file(broken / "adapter_model.safetensors")
    key = next(name for name in state if "lora_B" in name)
    state[key][0, 0] = float("nan")
    save_file(state, broken / "adapter_model.safetensors")
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", str(broken), "--output", str(tmp_path / "out"))
    assert code == 1 and "NaN or Inf" in err and len([line for line in err.splitlines() if line.startswith("Error")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lorakit-home", "nan-lora"]


@pytest.mark.parametrize("shard", ["5GB", "2MiB"])
def test_single_shard_names(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path, shard):
    out = tmp_path / "single"
    _merge(run_cli, tiny_model_dir, "--lora", tiny_adapter_dir, "--output", out, "--max-shard-size", shard, "--no-verify")
    assert (out / "model.safetensors").is_file() and not (out / "model.safetensors.index.json").exists()
