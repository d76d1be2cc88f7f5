"""Each bad input: one clear line on stderr, a non-zero exit, no traceback."""

import json

import pytest
from lorakit_testing import build_tiny_model, make_peft_adapter
from safetensors.torch import save_file


def _one_line_error(code, err, *needles, exit_code=1):
    assert code == exit_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def other_bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("other")
    wide = build_tiny_model(root / "wide", hidden_size=96, intermediate_size=128)
    deep = build_tiny_model(root / "deep", num_hidden_layers=3)
    return {
        "wide": make_peft_adapter(wide, root / "wide-lora"),
        "deep": make_peft_adapter(deep, root / "deep-lora", targets=("q_proj",)),
        "vocab": make_peft_adapter(build_tiny_model(root / "vocab", vocab_size=600), root / "vocab-lora", modules_to_save=["embed_tokens"]),
    }


def test_missing_model(run_cli, tmp_path):
    code, _, err = run_cli("generate", str(tmp_path / "nope"), "--prompt", "x")
    _one_line_error(code, err, "not found")


def test_missing_model_repo_id_suggests_download(run_cli):
    code, _, err = run_cli("generate", "someorg/somemodel", "--prompt", "x")
    _one_line_error(code, err, "lorakit download someorg/somemodel")


def test_missing_adapter(run_cli, tiny_model_dir, tmp_path):
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(tmp_path / "missing"))
    _one_line_error(code, err, "not found")


def test_folder_that_is_not_an_adapter(run_cli, tiny_model_dir):
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(tiny_model_dir))
    _one_line_error(code, err, "not a LoRA adapter folder", "adapter_config.json")


def test_empty_adapter(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "adapter_config.json").write_text((tiny_adapter_dir / "adapter_config.json").read_text())
    save_file({}, str(empty / "adapter_model.safetensors"))
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(empty))
    _one_line_error(code, err, "no tensors")


def test_pickle_only_adapter_needs_opt_in(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text((tiny_adapter_dir / "adapter_config.json").read_text())
    torch.save(load_file(str(tiny_adapter_dir / "adapter_model.safetensors")), pickled / "adapter_model.bin")
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(pickled))
    _one_line_error(code, err, "pickle", "--allow-pickle")
    code, out, err = run_cli("apply", str(tiny_model_dir), "--lora", str(pickled), "--allow-pickle", "--json")
    assert code == 0, err
    assert json.loads(out)["effects"][0]["changes_output"]


def test_adapter_for_a_wider_base_names_hidden_size(run_cli, tiny_model_dir, other_bases):
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(other_bases["wide"]))
    _one_line_error(code, err, "input size is 96 in the adapter and 64 in the base (hidden_size)")


def test_adapter_for_a_deeper_base_names_layers(run_cli, tiny_model_dir, other_bases):
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(other_bases["deep"]))
    _one_line_error(code, err, "layer 2", "2 layers")


def test_adapter_with_another_vocabulary(run_cli, tiny_model_dir, other_bases):
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(other_bases["vocab"]))
    _one_line_error(code, err, "embed_tokens", "vocab_size")


def test_adapter_for_another_architecture(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    from safetensors.torch import load_file

    foreign = tmp_path / "gpt2-style"
    foreign.mkdir()
    config = json.loads((tiny_adapter_dir / "adapter_config.json").read_text())
    config["target_modules"] = ["c_attn"]
    (foreign / "adapter_config.json").write_text(json.dumps(config))
    tensors = {k.replace("self_attn.q_proj", "self_attn.c_attn"): v for k, v in load_file(str(tiny_adapter_dir / "adapter_model.safetensors")).items()}
    save_file(tensors, str(foreign / "adapter_model.safetensors"))
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(foreign))
    _one_line_error(code, err, "'c_attn'", "does not have")


def test_base_signature_mismatch_is_named(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    import shutil

    signed = tmp_path / "signed"
    shutil.copytree(tiny_adapter_dir, signed)
    (signed / "lorakit_base.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}))
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", str(signed))
    _one_line_error(code, err, "hidden_size 4096", "hidden_size 64")


def test_unknown_loader(run_cli, tiny_model_dir):
    code, _, err = run_cli("apply", str(tiny_model_dir), "--loader", "nosuch")
    _one_line_error(code, err, "unknown loader 'nosuch'", "transformers", exit_code=2)


def test_bad_weight_syntax(run_cli, tiny_model_dir, tiny_adapter_dir):
    code, _, err = run_cli("apply", str(tiny_model_dir), "--lora", "mylora:abc")
    _one_line_error(code, err, "not a number", exit_code=2)


def test_generate_needs_exactly_one_prompt_source(run_cli, tiny_model_dir):
    code, _, err = run_cli("generate", str(tiny_model_dir))
    _one_line_error(code, err, "--prompt", exit_code=2)


def test_bad_jsonl_names_the_line(run_cli, tiny_model_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{broken\n')
    code, _, err = run_cli("generate", str(tiny_model_dir), "--input-file", str(prompts))
    _one_line_error(code, err, "line 2", exit_code=2)


def test_quantization_flags_exclude_each_other(run_cli, tiny_model_dir):
    code, _, err = run_cli("generate", str(tiny_model_dir), "--prompt", "x", "--load-in-8bit", "--load-in-4bit")
    _one_line_error(code, err, "exclude each other", exit_code=2)
