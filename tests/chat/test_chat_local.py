"""``lorakit chat`` in process, driven through CliRunner's stdin: a tiny random Llama, real PEFT adapters.

The oracle for every reply is ``lorakit generate`` with the same prompt, LoRAs and greedy settings
(itself checked against PEFT elsewhere), and transformers' own greedy decoding for a later turn.
"""

from __future__ import annotations

import json

import pytest

from lorakit_testing import single_lora_loader

GREEDY = ("--greedy", "--max-new-tokens", "8")


def _generate(run_cli, model, prompt, *loras):
    args = [arg for lora in loras for arg in ("--lora", lora)]
    code, out, err = run_cli("generate", str(model), "--prompt", prompt, *GREEDY, *args, "--json")
    assert code == 0, err
    return json.loads(out)["output"]


def _chat(run_cli, model, script, *extra):
    code, out, err = run_cli("chat", str(model), *GREEDY, "--no-history", *extra, input="\n".join(script) + "\n")
    assert code == 0, err
    assert "Traceback" not in err
    return out, err


def _assistant_texts(path):
    return [message["content"] for message in json.loads(path.read_text())["messages"] if message["role"] == "assistant"]


def test_lora_commands_change_the_reply_exactly_as_generate_does(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    a, b = str(tiny_adapter_dir), str(tiny_adapter2_dir)
    base = _generate(run_cli, tiny_model_dir, "hello")
    with_a = _generate(run_cli, tiny_model_dir, "hello", a)
    half_a = _generate(run_cli, tiny_model_dir, "hello", f"{a}:0.5")
    both = _generate(run_cli, tiny_model_dir, "hello", f"{a}:0.5", f"{b}:0.3")
    assert len({base, with_a, half_a, both}) == 4  # every step below must be told apart
    saves = [tmp_path / f"s{i}.json" for i in range(5)]
    script = [
        "hello", f"/save {saves[0]}", "/reset",
        f"/lora add {a}", "hello", f"/save {saves[1]}", "/reset",
        "/weight tiny-lora 0.5", "hello", f"/save {saves[2]}", "/reset",
        f"/lora add {b}:0.3", "hello", f"/save {saves[3]}", "/reset",
        "/lora remove tiny-lora", "/lora remove tiny-lora-2", "hello", f"/save {saves[4]}",
    ]
    out, err = _chat(run_cli, tiny_model_dir, script)
    assert [_assistant_texts(path) for path in saves] == [[base], [with_a], [half_a], [both], [base]]
    assert "added tiny-lora (weight 1)" in err and "added tiny-lora-2 (weight 0.3)" in err
    assert "tiny-lora weight 0.5" in err and "removed tiny-lora in" in err and "not reloaded" in err
    assert out.count(base) >= 2 and with_a in out  # the replies were streamed to stdout


def test_history_system_save_and_reset(run_cli, tiny_model_dir, tmp_path):
    """A second turn sees the first (checked against transformers on the rendered conversation)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved, after_reset = tmp_path / "chat.json", tmp_path / "again.json"
    script = ["/system Be brief.", "hello", "and then?", f"/save {saved}", "/reset", "hello", f"/save {after_reset}"]
    out, err = _chat(run_cli, tiny_model_dir, script)
    record = json.loads(saved.read_text())
    roles = [message["role"] for message in record["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert record["messages"][0]["content"] == "Be brief." and record["sampling"]["greedy"] is True
    assert "conversation cleared (2 exchanges forgotten)" in err

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    text = tokenizer.apply_chat_template(record["messages"][:4], add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        new = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                             repetition_penalty=1.15, pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]
    assert record["messages"][4]["content"] == tokenizer.decode(new, skip_special_tokens=True)
    # /reset keeps the system message: the first turn again gives the first reply
    assert json.loads(after_reset.read_text())["messages"][:3] == record["messages"][:3]


def test_bad_slash_commands_answer_one_line_and_the_chat_goes_on(run_cli, tiny_model_dir, tmp_path):
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    script = ["/bogus", "/weight", "/weight nothere 0.5", "/weight x abc", "/lora frob x", "/lora add", f"/lora add {tmp_path}/none",
              "/lora remove ghost", "/save", f"/save {tmp_path}", '/save "unclosed', "/help", "hello", "/quit", "never sent"]
    out, err = _chat(run_cli, tiny_model_dir, script)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 11, err
    assert "error: unknown command '/bogus'; type /help for the list" in errors
    assert any("no LoRA named 'nothere'" in line for line in errors)
    assert any("'abc' is not a number" in line for line in errors)
    assert any("usage: /lora add NAME[:W]" in line for line in errors)
    assert any("is a folder" in line for line in errors)
    assert "/lora add NAME[:W]" in out  # /help is on stdout
    assert err.count("tokens/s") == 1  # one reply, and nothing after /quit
    assert list(tmp_path.iterdir()) == []  # no file was written by a failed /save


def test_prompt_format_recorded_by_the_lora_is_used(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    """An adapter trained with the alpaca format gets alpaca prompts, the same as generate gives it."""
    import shutil

    alpaca = tmp_path / "alpaca-lora"
    shutil.copytree(tiny_adapter_dir, alpaca)
    (alpaca / "prompt_format.json").write_text(json.dumps({"template": "alpaca", "name": "alpaca", "kind": "format"}))
    expected = _generate(run_cli, tiny_model_dir, "Name a colour.", str(alpaca))
    saved = tmp_path / "s.json"
    out, err = _chat(run_cli, tiny_model_dir, ["Name a colour.", f"/save {saved}", "/system Be brief.", "Name a colour."], "--lora", str(alpaca))
    assert _assistant_texts(saved) == [expected]
    assert "the alpaca format has no place for a system message; it is left out of the prompt" in err
    code, gen_out, gen_err = run_cli("generate", str(tiny_model_dir), "--prompt", "Name a colour.", *GREEDY, "--template", "raw", "--json")
    _chat(run_cli, tiny_model_dir, ["Name a colour.", f"/save {saved}"], "--template", "raw")
    assert _assistant_texts(saved) == [json.loads(gen_out)["output"]]


def test_format_file_turns_render_the_recorded_templates():
    from lorakit.inference.conversation import ChatFormat, choose_format

    record = {"template": "chatml", "name": "chatml", "kind": "format", "templates": {
        "instruction,output": "<|im_start|>user\n%instruction%<|im_end|>\n<|im_start|>assistant\n%output%<|im_end|>",
        "instruction,output,system": "<|im_start|>system\n%system%<|im_end|>\n<|im_start|>user\n%instruction%<|im_end|>\n<|im_start|>assistant\n%output%<|im_end|>"}}
    chosen = choose_format("auto", None, [record])
    assert chosen.kind == "format" and chosen.name == "chatml"
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "more"}]
    text, special = chosen.render(None, "S", turns)
    assert text == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
                    "<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n")
    assert special is True
    assert ChatFormat("alpaca", "alpaca").render(None, None, turns[:1])[0].endswith("### Instruction:\nhi\n\n### Response:\n")


@pytest.mark.parametrize("name", ["alpaca-chatbot", "chatml", "llama2-chat", "vicuna"])
def test_every_shipped_format_file_renders_turns_and_a_first_turn_as_generate_does(name):
    """``chat --template NAME`` (and a LoRA trained with NAME): turn one is generate's prompt; later
    turns keep the earlier exchanges, answers filled in, in the file's own template."""
    from lorakit.inference.conversation import choose_format
    from lorakit.inference.prompts import render

    chosen = choose_format(name, None, [])
    assert chosen.kind == "format" and chosen.name == name
    assert chosen.render(None, None, [{"role": "user", "content": "hi"}])[0] == render(name, None, "hi")[0]
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "more"}]
    text, special = chosen.render(None, None, turns)
    assert special is True and text.endswith(render(name, None, "more")[0])
    earlier = text[: -len(render(name, None, "more")[0])]
    assert earlier.startswith(render(name, None, "hi")[0] + "yo") and "%" not in text


def test_one_lora_reload_backend_says_so_plainly(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir):
    with single_lora_loader():
        script = [f"/lora add {tiny_adapter2_dir}", "/weight tiny-lora 0.5", "/lora remove tiny-lora", f"/lora add {tiny_adapter2_dir}"]
        out, err = _chat(run_cli, tiny_model_dir, script, "--loader", "single", "--lora", str(tiny_adapter_dir))
        assert "this backend holds one LoRA at a time; removing a LoRA reloads the base model; LoRA weights are fixed at 1" in err
        assert "error: loader 'single' takes 1 LoRA at a time and tiny-lora is attached" in err
        assert "error: loader 'single' cannot change a LoRA's weight" in err
        assert "the base model was reloaded" in err and "added tiny-lora-2" in err


def test_a_conversation_longer_than_the_context_leaves_out_its_oldest_exchanges(run_cli, tiny_model_dir, tmp_path):
    long = "hello world " * 100  # about 200 tokens; the tiny model's context is 512
    saved = tmp_path / "s.json"
    out, err = _chat(run_cli, tiny_model_dir, [long, long, long, "hello " * 600, f"/save {saved}"])
    assert "the oldest 1 exchange is left out of this prompt" in err
    assert err.count("tokens/s") == 3
    assert "error: this message is" in err and "the model's context is 512; send a shorter message" in err
    assert len(json.loads(saved.read_text())["messages"]) == 6  # the conversation itself keeps every exchange


def test_apply_interactive_generate_is_a_chat_turn_through_the_same_engine(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    with_a = _generate(run_cli, tiny_model_dir, "hello", str(tiny_adapter_dir))
    saved = tmp_path / "s.json"
    _chat(run_cli, tiny_model_dir, ["hello", "hello again", f"/save {saved}"], "--lora", str(tiny_adapter_dir))
    first, second = _assistant_texts(saved)
    assert first == with_a
    script = "generate hello\ngenerate hello again\nreset\ngenerate hello\nquit\n"
    code, out, err = run_cli("apply", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--no-probe", "-i", *GREEDY, input=script)
    assert code == 0, err
    assert out.count(with_a) == 2 and second in out and "conversation cleared" in out  # multi-turn, then reset


def test_ctrl_c_during_a_reply_keeps_the_chat_and_drops_the_turn(monkeypatch, capsys):
    """Plumbing of the interrupt path (the key press itself is the terminal's; the pty test covers readline)."""
    import io

    from lorakit.chat.repl import ChatRepl
    from lorakit.inference.chat_engine import Reply
    from lorakit.inference.generation import SamplingSettings

    class Engine:
        calls = 0

        def describe(self):
            return "a test engine"

        def loras(self):
            return []

        def reply(self, system, turns, settings, on_text=None):
            Engine.calls += 1
            on_text("partial")
            if Engine.calls == 1:
                raise KeyboardInterrupt
            return Reply(f"answer to {len(turns)} turn(s)", 3, 0.1, "eos")

    monkeypatch.setattr("sys.stdin", io.StringIO("first\nsecond\n"))
    repl = ChatRepl(Engine(), SamplingSettings(greedy=True))
    assert repl.run() == 0
    captured = capsys.readouterr()
    assert "(reply stopped; it is not kept in the conversation)" in captured.err
    assert repl.conversation.messages == [{"role": "user", "content": "second"}, {"role": "assistant", "content": "answer to 1 turn(s)"}]
