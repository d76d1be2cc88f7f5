"""--adapters-only: each combination method equals PEFT's add_weighted_adapter, and the result is a normal PEFT adapter."""

from __future__ import annotations

import json

import pytest
import torch
from merge_helpers import (  # noqa: F401  (fixtures)
    PROMPT,
    adapters_dir,
    logits,
    one_torch_thread,
    same_rank_adapter_dir,
)
from safetensors.torch import load_file


def peft_combined(base_dir, adapters, weights, method, **kwargs) -> dict:
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), str(adapters[0]), adapter_name="one")
    model.load_adapter(str(adapters[1]), adapter_name="two")
    model.add_weighted_adapter(["one", "two"], weights, adapter_name="mix", combination_type=method, **kwargs)
    return get_peft_model_state_dict(model, adapter_name="mix")


def _combine(run_cli, tmp_path, adapters, weights, method, *extra):
    out = tmp_path / f"mix-{method}"
    code, stdout, err = run_cli("merge", "--adapters-only", *map(str, adapters), "--weights", ",".join(map(str, weights)),
                                "--method", method, "--output", str(out), "--json", *extra)
    assert code == 0, err
    return out, json.loads(stdout)


def _products(state: dict, scale: float = 1.0) -> dict:
    return {key: (state[key.replace("lora_A", "lora_B")] @ state[key]) * scale for key in state if "lora_A" in key}


def test_cat_of_different_ranks_equals_peft(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    out, report = _combine(run_cli, tmp_path, [tiny_adapter_dir, tiny_adapter2_dir], [0.7, -0.4], "cat")
    ours, theirs = load_file(out / "adapter_model.safetensors"), peft_combined(tiny_model_dir, [tiny_adapter_dir, tiny_adapter2_dir], [0.7, -0.4], "cat")
    assert set(ours) == set(theirs)
    assert all(torch.allclose(ours[key], theirs[key], atol=1e-7) for key in ours)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 12 and report["check"]["max_abs_update_diff"] <= 1e-5  # cat is exact
    assert sorted(config["target_modules"]) == ["down_proj", "k_proj", "o_proj", "q_proj", "v_proj"]
    # A normal PEFT adapter: it loads, and base + combined == base + 0.7 A + (-0.4) B unmerged.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lorakit.api import LoadOptions
    from lorakit.inference.planning import open_session

    combined = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), str(out))
    session, _ = open_session(str(tiny_model_dir), [f"{tiny_adapter_dir}:0.7", f"{tiny_adapter2_dir}:-0.4"], options=LoadOptions(cpu=True), quiet=True)
    ids = session.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    assert (logits(combined, tokenizer_dir=tiny_model_dir) - session.forward_logits(ids)).abs().max().item() <= 1e-5


def test_svd_equals_peft(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    out, report = _combine(run_cli, tmp_path, [tiny_adapter_dir, tiny_adapter2_dir], [1.0, 0.5], "svd", "--svd-rank", "6")
    ours = load_file(out / "adapter_model.safetensors")
    theirs = peft_combined(tiny_model_dir, [tiny_adapter_dir, tiny_adapter2_dir], [1.0, 0.5], "svd", svd_rank=6)
    assert {key: tuple(value.shape) for key, value in ours.items()} == {key: tuple(value.shape) for key, value in theirs.items()}
    mine, peft = _products(ours), _products(theirs)
    assert all(torch.allclose(mine[key], peft[key], atol=1e-5) for key in mine)  # factors may differ in sign, products do not
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 6 and report["check"]["max_abs_update_diff"] > 0


@pytest.mark.parametrize(
    "method,extra,peft_kwargs",
    [
        ("linear", [], {}),
        ("ties", ["--density", "0.5"], {"density": 0.5}),
        ("ties", ["--density", "0.3", "--majority-sign", "frequency"], {"density": 0.3, "majority_sign_method": "frequency"}),
        ("dare_linear", ["--density", "1.0"], {"density": 1.0}),
        ("dare_ties", ["--density", "1.0"], {"density": 1.0}),
        ("magnitude_prune", ["--density", "0.5"], {"density": 0.5}),
    ],
)
def test_equal_rank_methods_equal_peft(run_cli, tiny_model_dir, tiny_adapter_dir, same_rank_adapter_dir, tmp_path, method, extra, peft_kwargs):
    adapters = [tiny_adapter_dir, same_rank_adapter_dir]
    out, _ = _combine(run_cli, tmp_path, adapters, [0.6, 0.8], method, *extra)
    ours, theirs = load_file(out / "adapter_model.safetensors"), peft_combined(tiny_model_dir, adapters, [0.6, 0.8], method, **peft_kwargs)
    assert set(ours) == set(theirs)
    assert all(torch.allclose(ours[key], theirs[key], atol=1e-6) for key in ours)


def test_dare_is_random_but_seeded(run_cli, tiny_adapter_dir, same_rank_adapter_dir, tmp_path):
    runs = []
    for index, seed in enumerate(["1", "1", "2"]):
        out = tmp_path / f"dare-{index}"
        code, _, err = run_cli("merge", "--adapters-only", str(tiny_adapter_dir), str(same_rank_adapter_dir), "--method", "dare_ties",
                               "--density", "0.5", "--seed", seed, "--output", str(out))
        assert code == 0, err
        runs.append((out / "adapter_model.safetensors").read_bytes())
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_bare_name_goes_to_the_loras_folder(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, lorakit_home):
    code, stdout, err = run_cli("merge", "--adapters-only", str(tiny_adapter_dir), "--lora", f"{tiny_adapter2_dir}:0.5", "--output", "combined", "--json")
    assert code == 0, err
    target = lorakit_home / "loras" / "combined"
    assert json.loads(stdout)["output"] == str(target)
    assert sorted(p.name for p in target.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "lorakit_combination.json"]
    provenance = json.loads((target / "lorakit_combination.json").read_text())
    assert provenance["method"] == "cat" and [a["weight"] for a in provenance["adapters"]] == [1.0, 0.5]
    # It is usable by name right away, e.g. merged into the base.
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", "combined", "--output", str(lorakit_home / "merged"), "--no-verify")
    assert code == 0, err
