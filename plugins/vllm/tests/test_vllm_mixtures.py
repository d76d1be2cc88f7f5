"""Mixtures folded into one stacked-rank LoRA equal PEFT's weighted sum; names resolve only inside loras/."""

import json
import math

import pytest
import torch
from lorakit_vllm.vllm_side import mixtures
from lorakit_vllm.vllm_side.resolver import LorakitNames


def logits(base_dir, adapters, weights=None, active_sum=False):
    """The base's logits with PEFT: one adapter folder, or several mixed.

    ``weights`` alone: PEFT's ``add_weighted_adapter(combination_type="cat")``. ``active_sum``: every
    adapter active at once with each layer's ``scaling`` times its weight, PEFT's own sum of deltas
    (the oracle for rsLoRA, whose ``cat`` mixture PEFT rescales by sqrt(r) as a whole).
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapters[0], adapter_name="p0")
    for index, folder in enumerate(adapters[1:], start=1):
        model.load_adapter(folder, adapter_name=f"p{index}")
    names = [f"p{index}" for index in range(len(adapters))]
    if active_sum:
        from peft.tuners.lora import LoraLayer

        model.base_model.set_adapter(names)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for name, weight in zip(names, weights):
                    if name in module.scaling:
                        module.scaling[name] *= weight
    elif weights is not None:
        model.add_weighted_adapter(names, list(weights), "mix", combination_type="cat")
        model.set_adapter("mix")
    ids = torch.tensor([[3, 17, 42, 99, 7, 250, 311, 5]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_two_adapters_of_different_ranks_and_targets_fold_to_peft_cat(tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    folded = mixtures.fold([(tiny_adapter_dir, 0.7), (tiny_adapter2_dir, 0.3)], tmp_path / "mix")
    config = json.loads((folded / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 4 + 8
    assert config["target_modules"] == ["down_proj", "k_proj", "o_proj", "q_proj", "v_proj"]
    mine = logits(tiny_model_dir, [folded])
    peft = logits(tiny_model_dir, [tiny_adapter_dir, tiny_adapter2_dir], weights=[0.7, 0.3])
    base_only = logits(tiny_model_dir, [tiny_adapter_dir], weights=[0.0])
    torch.testing.assert_close(mine, peft, atol=1e-5, rtol=1e-5)
    summed = logits(tiny_model_dir, [tiny_adapter_dir, tiny_adapter2_dir], weights=[0.7, 0.3], active_sum=True)
    torch.testing.assert_close(mine, summed, atol=1e-5, rtol=1e-5)
    assert (mine - base_only).abs().max() > 1e-2  # the mixture changes the output


def test_rslora_rank_pattern_and_a_negative_weight_fold_exactly(tiny_model_dir, tiny_adapter_dir, make_adapter, tmp_path):
    patterned = make_adapter(
        tiny_model_dir, tmp_path / "patterned", seed=5, r=4, alpha=16, targets=("q_proj", "v_proj", "up_proj"),
        use_rslora=True, rank_pattern={"up_proj": 2}, alpha_pattern={"v_proj": 4},
    )
    folded = mixtures.fold([(patterned, -0.5), (tiny_adapter_dir, 1.25)], tmp_path / "mix")
    mine = logits(tiny_model_dir, [folded])
    peft = logits(tiny_model_dir, [patterned, tiny_adapter_dir], weights=[-0.5, 1.25], active_sum=True)
    torch.testing.assert_close(mine, peft, atol=1e-5, rtol=1e-5)
    # One part at weight 1 is the adapter itself (rsLoRA and the patterns absorbed into B).
    alone = mixtures.fold([(patterned, 1.0)], tmp_path / "alone")
    torch.testing.assert_close(logits(tiny_model_dir, [alone]), logits(tiny_model_dir, [patterned]), atol=1e-5, rtol=1e-5)


def test_grammar():
    parse = mixtures.parse_mixture
    assert parse("a:0.7+b:0.3") == [mixtures.Part("a", 0.7), mixtures.Part("b", 0.3)]
    assert parse("org/name:1e+0+b") == [mixtures.Part("org/name", 1.0), mixtures.Part("b")]
    assert parse("x:y:-2") == [mixtures.Part("x:y", -2.0)]
    for bad in ("a+", "+a", ":0.5", "a+b:1e999", "a:1e999", "a:0.5+a:0.5"):
        with pytest.raises(mixtures.MixtureError):
            parse(bad)


def test_names_resolve_inside_loras_only_and_mixtures_are_cached(tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    import shutil

    loras = tmp_path / "loras"
    shutil.copytree(tiny_adapter_dir, loras / "alpha")
    shutil.copytree(tiny_adapter2_dir, loras / "org_beta")
    (tmp_path / "outside").mkdir()
    shutil.copytree(tiny_adapter_dir, tmp_path / "outside" / "x")
    names = LorakitNames(loras, tmp_path / "cache")
    assert names.lookup("alpha") == loras / "alpha"
    assert names.lookup("org/beta") == loras / "org_beta"  # a hub id, stored the webui's way
    assert names.lookup("alpha:1") == loras / "alpha"
    for nothing in ("missing", "../outside/x", str(tmp_path / "outside" / "x"), "~/x", "alpha+missing", "alpha:nan", "a/b/c", ""):
        assert names.lookup(nothing) is None, nothing
    mixed = names.lookup("alpha:0.7+org/beta:0.3")
    assert mixed.parent == tmp_path / "cache" and (mixed / "adapter_model.safetensors").is_file()
    stamp = (mixed / "adapter_model.safetensors").stat().st_mtime_ns
    assert names.lookup("alpha:0.7+org/beta:0.3") == mixed
    assert (mixed / "adapter_model.safetensors").stat().st_mtime_ns == stamp  # reused, not refolded
    assert names.lookup("alpha:0.5+org/beta:0.3") != mixed
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_lora_default_weight_applies_to_its_terms(tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    """``--lora half:0.5`` (any folder): ``half`` alone is 0.5, ``half+b`` mixes it at 0.5, ``half:2`` at 2."""
    import json

    names = LorakitNames(None, tmp_path / "cache", {"half": [str(tiny_adapter_dir), 0.5], "full": [str(tiny_adapter2_dir), 1.0]})
    assert names.lookup("full") == tiny_adapter2_dir and names.lookup("full:1") == tiny_adapter2_dir
    assert names.lookup("missing") is None and names.lookup("full+missing") is None  # no loras/ folder at all
    made_of = {name: json.loads((names.lookup(name) / "lorakit_mixture.json").read_text()) for name in ("half", "half+full", "half:2")}
    assert [part["weight"] for part in made_of["half"]] == [0.5]
    assert [part["weight"] for part in made_of["half+full"]] == [0.5, 1.0]
    assert [part["weight"] for part in made_of["half:2"]] == [2.0]


def test_adapters_vllm_cannot_serve_are_refused_in_one_line(tiny_model_dir, make_adapter, tmp_path):
    dora = make_adapter(tiny_model_dir, tmp_path / "dora", use_dora=True)
    with pytest.raises(mixtures.MixtureError, match=r"^cannot mix the adapter 'dora': it is a DoRA adapter") as caught:
        mixtures.fold([(dora, 0.5)], tmp_path / "mix")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "mix").exists()


def test_rank_bound_reads_the_pattern(tiny_model_dir, make_adapter, tmp_path):
    folder = make_adapter(tiny_model_dir, tmp_path / "p", r=4, rank_pattern={"v_proj": 12})
    assert mixtures.adapter_rank_bound(folder) == 12
    assert math.isclose(mixtures._scale({"lora_alpha": 8, "use_rslora": True}, "x.q_proj", 4), 4.0)
