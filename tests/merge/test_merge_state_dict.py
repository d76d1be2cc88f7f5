"""--format state_dict: Meta's LLaMA layout, key names, params.json and the rotary permutation, checked numerically."""

from __future__ import annotations

import json

import torch
from merge_helpers import (  # noqa: F401  (fixtures)
    adapters_dir,
    one_torch_thread,
    tied_head_adapter_dir,
    tied_model_dir,
)
from safetensors.torch import load_file

from lorakit.merging.meta_export import from_meta, permute, to_meta, unpermute


def hf_permute(w, n_heads, dim1, dim2):
    """transformers' convert_llama_weights_to_hf.permute (Meta -> HF), as that script wrote it."""
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def test_unpermute_is_the_inverse_of_the_hf_conversion():
    torch.manual_seed(0)
    for heads, rows, cols in [(4, 64, 64), (2, 32, 64), (9, 576, 576), (3, 192, 576)]:
        meta = torch.randn(rows, cols)
        hf = hf_permute(meta, heads, rows, cols)
        assert torch.equal(permute(meta, heads), hf)
        assert torch.equal(unpermute(hf, heads), meta)
        assert torch.equal(permute(unpermute(hf, heads), heads), hf)  # round trip


def test_unpermute_interleaves_rotary_halves():
    """HF rotates (i, i + d/2) pairs; Meta rotates (2i, 2i + 1): one head of 8 rows goes 0 4 1 5 2 6 3 7."""
    hf_rows = torch.arange(16, dtype=torch.float32).view(16, 1)  # two heads of head_dim 8
    assert unpermute(hf_rows, 2).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]


def test_state_dict_export(run_cli, tiny_model_dir, tiny_adapter2_dir, tmp_path):
    out = tmp_path / "meta"
    code, stdout, err = run_cli("merge", str(tiny_model_dir), "--lora", str(tiny_adapter2_dir), "--format", "state_dict", "--output", str(out), "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["verification"]["max_abs_logit_diff"] <= 1e-4
    assert sorted(p.name for p in out.iterdir()) == ["consolidated.00.pth", "lorakit_merge.json", "params.json"]
    params = json.loads((out / "params.json").read_text())
    assert params == {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 512, "multiple_of": 128,
                      "ffn_dim_multiplier": 0.7529, "norm_eps": 1e-06, "rope_theta": 10000.0}
    hidden = int(2 * 4 * params["dim"] / 3)
    if params.get("ffn_dim_multiplier"):
        hidden = int(params["ffn_dim_multiplier"] * hidden)
    assert params["multiple_of"] * -(-hidden // params["multiple_of"]) == 128  # Meta's formula gives intermediate_size

    state = torch.load(out / "consolidated.00.pth", weights_only=True)
    expected = {"tok_embeddings.weight", "norm.weight", "output.weight"}
    for layer in range(2):
        expected |= {f"layers.{layer}.{name}.weight" for name in (
            "attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3",
            "attention_norm", "ffn_norm")}
    assert set(state) == expected
    # Same numbers as the HF merge, with q/k rows in Meta's order.
    hf_out = tmp_path / "hf"
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", str(tiny_adapter2_dir), "--output", str(hf_out), "--no-verify")
    assert code == 0, err
    merged = load_file(hf_out / "model.safetensors")
    assert torch.equal(state["layers.1.attention.wq.weight"], unpermute(merged["model.layers.1.self_attn.q_proj.weight"], 4))
    assert torch.equal(state["layers.1.attention.wk.weight"], unpermute(merged["model.layers.1.self_attn.k_proj.weight"], 2))
    assert torch.equal(state["layers.0.feed_forward.w2.weight"], merged["model.layers.0.mlp.down_proj.weight"])
    assert not torch.equal(state["layers.0.attention.wq.weight"], merged["model.layers.0.self_attn.q_proj.weight"])
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert {key: torch.equal(value, merged[key]) for key, value in from_meta(state, config).items()} == {key: True for key in merged}
    assert to_meta("model.layers.0.self_attn.rotary_emb.inv_freq", torch.zeros(1), config) == (None, None)


def test_state_dict_of_a_tied_model_stores_the_head(run_cli, tied_model_dir, tied_head_adapter_dir, tmp_path):
    out = tmp_path / "meta"
    code, stdout, err = run_cli("merge", str(tied_model_dir), "--lora", str(tied_head_adapter_dir), "--format", "state_dict", "--output", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout)["verification"]["max_abs_logit_diff"] <= 1e-4
    state = torch.load(out / "consolidated.00.pth", weights_only=True)
    base = load_file(tied_model_dir / "model.safetensors")
    assert torch.equal(state["tok_embeddings.weight"], base["model.embed_tokens.weight"])
    assert not torch.equal(state["output.weight"], base["model.embed_tokens.weight"])  # the head LoRA went to the head only
