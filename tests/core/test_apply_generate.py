"""generate and apply on the tiny model, driven through the CLI."""

import json

from lorakit_testing import single_lora_loader


def test_generate_greedy_json(run_cli, tiny_model_dir, tiny_adapter_dir):
    code, out, err = run_cli("generate", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--prompt", "hello", "--greedy", "--max-new-tokens", "5", "--json", "--template", "raw")
    assert code == 0, err
    record = json.loads(out)
    assert record["new_tokens"] <= 5 and record["template"] == "raw"
    assert record["loras"][0]["name"] == tiny_adapter_dir.name


def test_generate_plain_stdout_holds_only_text(run_cli, tiny_model_dir):
    code, out, err = run_cli("generate", str(tiny_model_dir), "--prompt", "hello", "--greedy", "--max-new-tokens", "4", "--template", "raw")
    assert code == 0
    assert "Loading" not in out and "tokens/s" in err


def test_generate_jsonl_in_and_out_and_compare(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hello"}\n"the quick"\n{"instruction": "Say hi", "input": "world", "max_new_tokens": 2}\n')
    code, out, err = run_cli("generate", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--input-file", str(prompts), "--compare", "--greedy", "--max-new-tokens", "6", "--template", "alpaca")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["prompt"] for row in rows] == ["hello", "the quick", "Say hi"]
    assert all("base_output" in row and "output" in row for row in rows)
    assert rows[2]["new_tokens"] <= 2 and rows[2]["input"] == "world"


def test_generate_sampling_is_reproducible_with_seed(run_cli, tiny_model_dir):
    args = ("generate", str(tiny_model_dir), "--prompt", "hello", "--seed", "7", "--max-new-tokens", "8", "--json", "--template", "chat")
    first = json.loads(run_cli(*args)[1])["output"]
    second = json.loads(run_cli(*args)[1])["output"]
    assert first == second


def test_apply_reports_effect_and_flags_a_lora_that_changes_nothing(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    untrained = tmp_path / "untrained"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(untrained)  # B = 0: no effect
    code, out, err = run_cli("apply", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--lora", str(untrained), "--json")
    assert code == 0, err
    effects = {e["name"]: e for e in json.loads(out)["effects"]}
    assert effects[tiny_adapter_dir.name]["changes_output"] is True
    assert effects["untrained"]["changes_output"] is False
    assert "changes NOTHING" in err


def test_apply_interactive_session(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir):
    script = "\n".join([
        "list", f"add {tiny_adapter2_dir}:0.5", "weight tiny-lora-2 0.25", "generate hello", "remove tiny-lora",
        "remove nothere", "probe", "quit",
    ]) + "\n"
    code, out, err = run_cli("apply", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--no-probe", "-i", input=script)
    assert code == 0, err
    assert "added tiny-lora-2 (weight 0.5)" in out
    assert "tiny-lora-2 weight 0.25" in out
    assert "removed tiny-lora in" in out and "not reloaded" in out
    assert "error: no LoRA named 'nothere'" in out
    assert "tiny-lora-2: changes the output" in out


def test_reload_backend_reloads_the_base_and_refuses_two(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir):
    """A single-LoRA, reload-to-remove backend (a throwaway plugin registered for this test)."""
    with single_lora_loader():
        code, _, err = run_cli("apply", str(tiny_model_dir), "--loader", "single", "--lora", str(tiny_adapter_dir), "--lora", str(tiny_adapter2_dir))
        assert code == 1
        assert "takes 1 LoRA at a time, 2 were given" in err and "transformers" in err
        script = f"remove tiny-lora\nadd {tiny_adapter2_dir}\nadd {tiny_adapter_dir}\nquit\n"
        code, out, err = run_cli("apply", str(tiny_model_dir), "--loader", "single", "--lora", str(tiny_adapter_dir), "--no-probe", "-i", input=script)
        assert code == 0, err
        assert "base model was reloaded" in out
        assert "added tiny-lora-2" in out
        assert "error: loader 'single' takes 1 LoRA at a time" in out


def test_8bit_generate_and_4bit_training_still_gets_gradients(tiny_model_dir, tiny_adapter_dir):

    from lorakit.api import LoadOptions
    from lorakit.inference.generation import SamplingSettings, generate
    from lorakit.inference.planning import open_session

    session, _ = open_session(str(tiny_model_dir), [str(tiny_adapter_dir)], options=LoadOptions(cpu=True, load_in_8bit=True), quiet=True)
    ids = session.tokenizer("The quick brown fox jumps over the lazy dog", return_tensors="pt")["input_ids"]
    assert generate(session, ids, SamplingSettings(max_new_tokens=3, greedy=True)).new_tokens >= 1

    session, _ = open_session(str(tiny_model_dir), options=LoadOptions(cpu=True, load_in_4bit=True), quiet=True)
    generate(session, ids, SamplingSettings(max_new_tokens=3, greedy=True))  # the no-grad forward that used to break training
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(session.base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
