"""Chat datasets: the tokenizer's own chat template, loss on assistant turns only."""

from __future__ import annotations

import json

import pytest
from data_helpers import smollm2_tokenizer, tiny_tokenizer, trained_runs, write_rows  # noqa: F401
from lorakit_testing import shared_data

from lorakit.errors import LorakitError
from lorakit.training.chat import conversation_of
from lorakit.training.dataset import DataSpec, load_examples


def _assistant_contents(row):
    return [m["content"] for m in conversation_of(row) if m["role"] == "assistant"]


def _check_assistant_only(tokenizer, rows, examples):
    end = tokenizer.eos_token  # "<|im_end|>" closes every turn in both templates
    for row, example in zip(rows, examples):
        expected = [content + end for content in _assistant_contents(row)]
        assert trained_runs(tokenizer, example) == expected
        for message in conversation_of(row):
            if message["role"] != "assistant":
                assert message["content"] in example.text  # rendered, but never trained


@pytest.mark.parametrize("layout", ["messages", "conversations"])
def test_tiny_template_trains_assistant_turns_only(tiny_tokenizer, tmp_path, layout):
    turns = [("system", "Be brief."), ("user", "Who are you?"), ("assistant", "A tiny model."), ("user", "Sure?"), ("assistant", "Yes, sure.")]
    if layout == "messages":
        row = {"messages": [{"role": r, "content": c} for r, c in turns]}
    else:
        names = {"system": "system", "user": "human", "assistant": "gpt"}
        row = {"id": "x", "conversations": [{"from": names[r], "value": c} for r, c in turns]}
    data = write_rows(tmp_path / "chat.json", [row])
    (example,), stats = load_examples(tiny_tokenizer, DataSpec(dataset=data))
    assert stats.kind == "chat" and stats.format_name == "chat"
    assert example.text == tiny_tokenizer.apply_chat_template(conversation_of(row), tokenize=False)
    _check_assistant_only(tiny_tokenizer, [row], [example])
    assert example.labels[-1] == -100  # the newline after the last <|im_end|> is not trained


def test_smollm2_template_on_sharegpt_500(smollm2_tokenizer):
    path = shared_data("sharegpt_fastchat_dummy_500.json")
    rows = json.loads(path.read_text())
    examples, stats = load_examples(smollm2_tokenizer, DataSpec(dataset=path, cutoff_len=2048))
    assert stats.count == len(rows) == 500 and stats.truncated == 0
    _check_assistant_only(smollm2_tokenizer, rows, examples)
    # SmolLM2's template injects its default system prompt: rendered, never trained
    assert all(example.text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM") for example in examples)
    # add_eos adds nothing: the trained turn already ends with EOS (<|im_end|> is SmolLM2's EOS)
    with_eos, _ = load_examples(smollm2_tokenizer, DataSpec(dataset=path, cutoff_len=2048, add_eos=True))
    assert [e.input_ids for e in with_eos[:20]] == [e.input_ids for e in examples[:20]]


def test_chat_with_train_only_after_narrows_the_assistant_spans(tiny_tokenizer, tmp_path):
    row = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "Thinking... ANSWER: 42"}]}
    data = write_rows(tmp_path / "c.json", [row])
    (example,), _ = load_examples(tiny_tokenizer, DataSpec(dataset=data, train_only_after="ANSWER:"))
    assert trained_runs(tiny_tokenizer, example) == [" 42<|im_end|>"]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "row 1 of .* has no assistant turn"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]}, "unknown role 'wizard' in turn 2"),
        ({"conversations": [{"from": "human"}]}, "without 'from' and 'value'"),
        ({"messages": []}, "empty or non-list conversation"),
    ],
)
def test_bad_chat_rows(tiny_tokenizer, tmp_path, row, message):
    data = write_rows(tmp_path / "c.json", [row])
    with pytest.raises(LorakitError, match=message):
        load_examples(tiny_tokenizer, DataSpec(dataset=data))


def test_tokenizer_without_chat_template(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    data = write_rows(tmp_path / "c.json", [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}])
    with pytest.raises(LorakitError, match="has none.*--format chatml"):
        load_examples(tokenizer, DataSpec(dataset=data))


def test_template_without_stable_prefixes_falls_back_to_search(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # closes every conversation with a footer, so a rendered prefix is not a prefix of the whole
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% else %}<|endoftext|>{% endif %}"
    )
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b c"},
                        {"role": "user", "content": "d"}, {"role": "assistant", "content": "e f"}]}
    data = write_rows(tmp_path / "c.json", [row])
    (example,), _ = load_examples(tokenizer, DataSpec(dataset=data))
    assert example.text.endswith("<|endoftext|>")
    assert trained_runs(tokenizer, example) == ["b c<|im_end|>", "e f<|im_end|>"]
