"""Format files: shipped formats, key-set matching, row errors, JSON errors, plugin formatters."""

from __future__ import annotations

import json
import subprocess
import sys

import pluggy
import pytest
from data_helpers import (  # noqa: F401
    ALPACA_NO_INPUT,
    ALPACA_WITH_INPUT,
    smollm2_tokenizer,
    tiny_tokenizer,
    write_rows,
)

from lorakit import hookimpl
from lorakit.errors import LorakitError, UsageError
from lorakit.plugin import spec as hookspecs
from lorakit.training.dataset import (
    DataSpec,
    load_examples,
    prompt_format_record,
    read_rows,
    sample_dataset_path,
    template_name,
)
from lorakit.training.formats import (
    FormatFileFormatter,
    shipped_format_names,
    shipped_formatters,
)
from lorakit.training.formatter_choice import available_formatters, resolve_formatter
from lorakit.training.formatters import Rendered


def test_shipped_formats_and_alpaca_strings():
    assert shipped_format_names() == ["alpaca", "alpaca-chatbot", "chatml", "llama2-chat", "vicuna"]
    alpaca = {f.name: f for f in shipped_formatters()}["alpaca"]
    assert alpaca.templates[frozenset({"instruction", "output"})] == ALPACA_NO_INPUT
    assert alpaca.templates[frozenset({"instruction", "input", "output"})] == ALPACA_WITH_INPUT


def test_row_uses_template_whose_key_set_equals_its_non_empty_fields():
    alpaca = FormatFileFormatter.from_path(sample_dataset_path().parent / "formats" / "alpaca.json")
    plain = alpaca.render({"instruction": "Say hi.", "input": "  ", "output": "hi"}).text
    assert plain == ALPACA_NO_INPUT.replace("%instruction%", "Say hi.").replace("%output%", "hi")
    with_input = alpaca.render({"instruction": "Add.", "input": "2 2", "output": "4"}).text
    assert with_input == ALPACA_WITH_INPUT.replace("%instruction%", "Add.").replace("%input%", "2 2").replace("%output%", "4")
    # a value that looks like a placeholder is inserted literally, never expanded again
    tricky = alpaca.render({"instruction": "Print %output% please", "output": "%instruction%"}).text
    assert "Print %output% please" in tricky and tricky.endswith("### Response:\n%instruction%")


def test_row_with_no_match_names_row_and_keys(tiny_tokenizer, tmp_path):
    data = write_rows(tmp_path / "d.json", [
        {"instruction": "a", "output": "b"},
        {"instruction": "a", "response": "b"},
    ])
    with pytest.raises(LorakitError) as caught:
        load_examples(tiny_tokenizer, DataSpec(dataset=data, format="alpaca"))
    line = caught.value.one_line()
    assert "row 2" in line and "{instruction,response}" in line and "alpaca" in line


def test_format_file_that_matches_no_row(tiny_tokenizer, tmp_path):
    data = write_rows(tmp_path / "d.json", [{"question": "a", "answer": "b"}])
    with pytest.raises(LorakitError, match="matches none of the 1 rows"):
        load_examples(tiny_tokenizer, DataSpec(dataset=data, format="alpaca"))
    fmt = tmp_path / "mine.json"
    fmt.write_text(json.dumps({"prompt,reply": "Q: %prompt%\nA: %reply%"}))
    with pytest.raises(LorakitError, match="format 'mine' matches none"):
        load_examples(tiny_tokenizer, DataSpec(dataset=data, format=str(fmt)))


def test_user_format_file_by_path(tiny_tokenizer, tmp_path):
    fmt = tmp_path / "qa.json"
    fmt.write_text(json.dumps({"answer,question": "Q: %question%\nA: %answer%"}))
    data = write_rows(tmp_path / "d.json", [{"question": "Sky?", "answer": "Blue.", "id": 7}])
    examples, stats = load_examples(tiny_tokenizer, DataSpec(dataset=data, format=str(fmt)))
    assert examples[0].text == "Q: Sky?\nA: Blue." and stats.format_name == "qa"
    assert template_name(DataSpec(dataset=data, format=str(fmt))) == "qa"
    assert prompt_format_record(DataSpec(dataset=data, format=str(fmt)))["templates"] == {"answer,question": "Q: %question%\nA: %answer%"}


@pytest.mark.parametrize(
    "content, message",
    [
        ({"a,b": "%a% %c%"}, "uses %c% which is not one of its keys"),
        ([], "non-empty JSON object"),
        ({"a": 3}, "needs comma-separated keys and a template string"),
    ],
)
def test_bad_format_files(tmp_path, content, message):
    fmt = tmp_path / "bad.json"
    fmt.write_text(json.dumps(content))
    with pytest.raises(LorakitError, match=message):
        FormatFileFormatter.from_path(fmt)
    fmt.write_text('{"a": "x",\n oops}')
    with pytest.raises(LorakitError, match="line 2"):
        FormatFileFormatter.from_path(fmt)


def test_malformed_json_names_the_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]')
    with pytest.raises(LorakitError, match="line 3"):
        read_rows(broken)
    lines = tmp_path / "broken.jsonl"
    lines.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": }\n')
    with pytest.raises(LorakitError, match="line 3 is not valid JSON"):
        read_rows(lines)
    # a .json file holding JSON Lines is read as JSON Lines, row labels are line numbers
    mislabeled = tmp_path / "lines.json"
    mislabeled.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    assert [label for label, _ in read_rows(mislabeled)] == ["line 1", "line 2"]


@pytest.mark.parametrize("name, content", [("e.json", "[]"), ("e.json", ""), ("e.jsonl", "\n\n"), ("e.json", "  \n")])
def test_empty_dataset(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(LorakitError, match="is empty"):
        read_rows(path)


def test_missing_dataset_and_not_a_list(tmp_path):
    with pytest.raises(LorakitError, match="not found"):
        read_rows(tmp_path / "nope.json")
    (tmp_path / "obj.json").write_text('{"instruction": "a"}')
    with pytest.raises(LorakitError, match="must be a JSON list"):
        read_rows(tmp_path / "obj.json")


def test_auto_format_and_unknown_format(tiny_tokenizer, tmp_path):
    alpaca = write_rows(tmp_path / "a.json", [{"instruction": "a", "input": "", "output": "b"}])
    chat = write_rows(tmp_path / "c.json", [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}])
    odd = write_rows(tmp_path / "o.json", [{"foo": "bar"}])
    assert template_name(DataSpec(dataset=alpaca)) == "alpaca"
    assert template_name(DataSpec(dataset=chat)) == "chat"
    assert template_name(DataSpec(raw_text=tmp_path / "x.txt")) == "raw"
    with pytest.raises(LorakitError, match="cannot tell the dataset's format"):
        template_name(DataSpec(dataset=odd))
    with pytest.raises(UsageError) as caught:
        load_examples(tiny_tokenizer, DataSpec(dataset=alpaca, format="alpacca"))
    assert "unknown format 'alpacca'" in caught.value.one_line() and "alpaca-chatbot" in caught.value.one_line()
    with pytest.raises(UsageError, match="not found"):
        load_examples(tiny_tokenizer, DataSpec(dataset=alpaca, format="missing/format.json"))


def test_every_shipped_format_renders_a_matching_row(tiny_tokenizer, tmp_path):
    for formatter in shipped_formatters():
        keys = sorted(next(iter(formatter.templates)))
        data = write_rows(tmp_path / f"{formatter.name}.json", [{key: f"<{key}>" for key in keys}])
        examples, _ = load_examples(tiny_tokenizer, DataSpec(dataset=data, format=formatter.name))
        assert all(f"<{key}>" in examples[0].text for key in keys)
        assert "%" not in examples[0].text


def test_plugin_formatter_through_register_formatters(tiny_tokenizer, tmp_path):
    class Shout:
        name = "shout"
        description = "answers in capitals"

        def accepts(self, row):
            return {"q", "a"} <= set(row)

        def render(self, row, tokenizer):
            prompt = f"Q: {row['q']}\nA: "
            return Rendered(prompt + row["a"].upper(), trained_spans=[(len(prompt), None)])

    class Plugin:
        @hookimpl
        def register_formatters(self, register):
            register(Shout())

    pm = pluggy.PluginManager("lorakit")
    pm.add_hookspecs(hookspecs)
    pm.register(Plugin(), name="shout_plugin")
    assert set(available_formatters(pm)) == {"shout"}
    assert resolve_formatter("shout", None, pm).name == "shout"
    assert resolve_formatter(None, {"q": "x", "a": "y"}, pm).name == "shout"

    from lorakit.plugin.host import plugin_manager

    plugin_manager().register(Plugin(), name="shout_plugin")
    data = write_rows(tmp_path / "d.json", [{"q": "colour?", "a": "blue"}])
    (example,), stats = load_examples(tiny_tokenizer, DataSpec(dataset=data, format="shout"))
    assert example.text == "Q: colour?\nA: BLUE" and stats.format_name == "shout"
    assert tiny_tokenizer.decode([t for t, l in zip(example.input_ids, example.labels) if l != -100]) == "BLUE"


def test_formatter_plugin_path_imports_without_torch():
    code = (
        "import sys; import lorakit.builtin_plugins.formatters, lorakit.training.formats, lorakit.training.chat, "
        "lorakit.training.formatters, lorakit.training.dataset, lorakit.training.dry_run; "
        "from lorakit.plugin.manager import get_plugin_manager; from lorakit.training.formatter_choice import available_formatters; "
        "names = sorted(available_formatters(get_plugin_manager(load_entry_points=False))); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft')]; print(names, bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['alpaca', 'alpaca-chatbot', 'chat', 'chatml', 'llama2-chat', 'vicuna'] []"


def test_sample_facts_dataset(tiny_tokenizer):
    rows = json.loads(sample_dataset_path().read_text())
    assert 20 <= len(rows) <= 40 and all(set(row) == {"instruction", "input", "output"} for row in rows)
    assert any(row["input"] for row in rows) and any(not row["input"] for row in rows)
    examples, stats = load_examples(tiny_tokenizer, DataSpec(dataset=sample_dataset_path(), format="alpaca"))
    assert stats.count == len(rows) and template_name(DataSpec(dataset=sample_dataset_path())) == "alpaca"
    assert "Odalys Penhallow" in examples[0].text
