"""What the server answers, against ``lorakit generate`` and PEFT: per adapter, mixed, concurrent, streamed."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import chat, wait_idle

PROMPT = "Paris is the capital of"
TOKENS = 12


def _generate(run_cli, model_dir, loras, template="chat", prompt=PROMPT) -> str:
    args = ["generate", str(model_dir), "--prompt", prompt, "--greedy", "--repetition-penalty", "1",
            "--max-new-tokens", str(TOKENS), "--template", template, "--json"]
    for lora in loras:
        args += ["--lora", lora]
    code, out, err = run_cli(*args)
    assert code == 0, err
    return json.loads(out)["output"]


def test_models_lists_base_and_adapters_like_vllm(served, serve_loras, tiny_model_dir):
    models = {m.id: m for m in served.client().models.list().data}
    assert set(models) >= {tiny_model_dir.name, "a", "b"}
    assert models["a"].parent == tiny_model_dir.name and models["a"].root == str(serve_loras / "a")
    assert models[tiny_model_dir.name].root == str(tiny_model_dir) and models["a"].object == "model"


@pytest.mark.parametrize("model, loras", [("BASE", []), ("a", ["a"]), ("b", ["b"]), ("a:0.5+b:0.5", ["a:0.5", "b:0.5"])])
def test_greedy_text_equals_lorakit_generate(served, serve_loras, tiny_model_dir, run_cli, model, loras):
    name = tiny_model_dir.name if model == "BASE" else model
    expected = _generate(run_cli, tiny_model_dir, [str(serve_loras / lora.split(":")[0]) + (":" + lora.split(":")[1] if ":" in lora else "") for lora in loras])
    assert chat(served.client(), name, PROMPT, TOKENS) == expected


def test_greedy_text_equals_peft(served, serve_loras, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft = PeftModel.from_pretrained(model, str(serve_loras / "b"))
    text = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = peft.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=TOKENS, do_sample=False)
    assert chat(served.client(), "b", PROMPT, TOKENS) == tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_recorded_prompt_format_is_used_with_the_whole_history(served, serve_loras, tiny_model_dir, tiny_adapter_dir, run_cli):
    """An alpaca-trained adapter: one message renders as ``generate`` renders it; earlier turns stay
    in the prompt the way ``lorakit chat`` renders them (one renderer for both)."""
    import shutil

    from transformers import AutoTokenizer

    from lorakit.inference.conversation import ChatFormat

    folder = serve_loras / "alpaca-fmt"
    shutil.copytree(tiny_adapter_dir, folder)
    (folder / "prompt_format.json").write_text(json.dumps({"template": "alpaca", "name": "alpaca", "kind": "format"}))
    try:
        assert chat(served.client(), "alpaca-fmt", "Name a colour.", TOKENS) == _generate(run_cli, tiny_model_dir, [str(folder)], "auto", "Name a colour.")
        turns = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
                 {"role": "user", "content": "Another one."}]
        answer = served.client().chat.completions.create(model="alpaca-fmt", messages=[{"role": "system", "content": "Be brief."}, *turns],
                                                         max_tokens=2, temperature=0)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        text, special = ChatFormat("alpaca", "alpaca").render(tokenizer, None, turns)
        assert "Blue." in text and answer.usage.prompt_tokens == len(tokenizer(text, add_special_tokens=special)["input_ids"])
    finally:
        assert wait_idle(served.runtime.engine)
        shutil.rmtree(folder)


def test_completions_endpoint_equals_generate_raw(served, tiny_model_dir, serve_loras, run_cli):
    expected = _generate(run_cli, tiny_model_dir, [str(serve_loras / "a")], template="raw", prompt="hello world")
    answer = served.client().completions.create(model="a", prompt="hello world", max_tokens=TOKENS, temperature=0)
    assert answer.choices[0].text == expected and answer.object == "text_completion"
    assert answer.usage.completion_tokens == TOKENS and answer.usage.total_tokens == answer.usage.prompt_tokens + TOKENS


def test_concurrent_mixed_requests_each_equal_their_solo_text(served, tiny_model_dir):
    client = served.client()
    base = tiny_model_dir.name
    jobs = [(model, prompt) for prompt in ("hello world", "To be, or not to be") for model in (base, "a", "b", "a:0.5+b:0.5")]
    solo = [chat(client, model, prompt, TOKENS) for model, prompt in jobs]
    steps_before = served.runtime.engine.steps
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: chat(client, job[0], job[1], TOKENS), jobs))
    assert together == solo
    # they really shared forward passes: far fewer decode steps than one sequence after another
    assert served.runtime.engine.steps - steps_before < len(jobs) * (TOKENS - 1)


def test_stream_chunks_and_usage(served):
    client = served.client()
    whole = client.chat.completions.create(model="a", messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS, temperature=0)
    chunks = list(client.chat.completions.create(model="a", messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    assert len({chunk.id for chunk in chunks}) == 1 and all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    choice_chunks = [chunk for chunk in chunks if chunk.choices]
    assert [c.choices[0].finish_reason for c in choice_chunks] == [None] * (len(choice_chunks) - 1) + ["length"]
    assert "".join(c.choices[0].delta.content or "" for c in choice_chunks) == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_stream_raw_events_end_with_done(served, tiny_model_dir):
    import httpx

    body = {"model": tiny_model_dir.name, "prompt": "hello", "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", served.url + "/v1/completions", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "length"


def test_stop_string_and_seeded_sampling(served, tiny_model_dir):
    client = served.client()
    base = tiny_model_dir.name
    full = chat(client, base, PROMPT, TOKENS)
    stop = full[3:6]
    cut = client.chat.completions.create(model=base, messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS,
                                         temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].message.content == full[: full.index(stop)]
    sampled = [chat(client, "a", PROMPT, TOKENS, seed=7, temperature=1.0, top_p=0.9) for _ in range(2)]
    assert sampled[0] == sampled[1]
    assert wait_idle(served.runtime.engine)


def test_penalties_apply_only_when_asked(served, tiny_model_dir):
    client = served.client()
    plain = chat(client, tiny_model_dir.name, PROMPT, 24)
    penalised = chat(client, tiny_model_dir.name, PROMPT, 24, frequency_penalty=2.0, extra_body={"repetition_penalty": 3.0})
    assert plain != penalised
