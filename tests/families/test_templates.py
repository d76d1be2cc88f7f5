"""``generate --template``: every shipped training format, and ``auto`` = the format the LoRA was trained with.

The oracle is training itself: the prompt generate builds must be exactly the start of the text the
training formatter renders for the same row, up to where the answer begins.
"""

from __future__ import annotations

import json

import pytest

from lorakit.inference.prompts import FORMAT_FILES, TEMPLATES, pick_prompt_format, render
from lorakit.training.formats import FormatFileFormatter, shipped_format_names, shipped_formats_dir

ROW = {"instruction": "Name a colour.", "output": "Green."}


def test_every_shipped_format_is_a_template():
    assert set(shipped_format_names()) <= set(TEMPLATES)
    assert set(FORMAT_FILES) | {"alpaca"} == set(shipped_format_names())


@pytest.mark.parametrize("name", shipped_format_names())
@pytest.mark.parametrize("row", [ROW, {**ROW, "input": "In French."}, {**ROW, "system": "Be brief."}])
def test_prompt_is_the_training_text_up_to_the_answer(name, row):
    formatter = FormatFileFormatter.from_path(shipped_formats_dir() / f"{name}.json", name)
    if name == "llama2-chat":  # its rows name the roles differently
        row = {"userprompt": row["instruction"], "modelanswer": row["output"], **({"systemprompt": row["system"]} if "system" in row else {})}
    if not formatter.accepts(row):
        pytest.skip(f"{name} has no template for {sorted(row)}")
    trained = formatter.render(row).text
    prompt = row.get("instruction", row.get("userprompt"))
    text, special = render(name, None, prompt, row.get("input"), row.get("system", row.get("systemprompt")))
    answer = row.get("output", row.get("modelanswer"))
    assert special and trained.startswith(text + answer)


def test_auto_uses_a_recorded_custom_format():
    record = {"template": "house", "kind": "format", "templates": {"instruction,output": "Q> %instruction%\nA> %output%"}}
    name, templates = pick_prompt_format("auto", None, [record])
    assert name == "house" and render(name, None, "Hi?", templates=templates)[0] == "Q> Hi?\nA> "
    assert pick_prompt_format("auto", None, [{"template": "vicuna", "kind": "format", "templates": {}}]) == ("vicuna", None)


def test_a_system_message_without_a_place_is_left_out_with_a_warning():
    said = []
    text, _ = render("vicuna", None, "Hi?", system="Be brief.", warn=said.append)
    assert "Be brief." not in text and "USER: Hi?" in text and said and "no place for a system message" in said[0]


@pytest.mark.parametrize("template", ["vicuna", "chatml"])
def test_generate_with_a_trained_format(template, run_cli, tiny_model_dir, lorakit_home, tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([ROW, {"instruction": "Say hi.", "output": "Hi."}] * 2))
    code, _, err = run_cli("train", str(tiny_model_dir), "--dataset", str(rows), "--format", template, "--name", "fmt", "--precision", "fp32",
                           "--max-steps", "1", "--batch-size", "2", "--micro-batch-size", "2", "--warmup-steps", "0", "--rank", "2")
    assert code == 0, err
    code, out, err = run_cli("generate", str(tiny_model_dir), "--lora", "fmt", "--prompt", "Name a colour.", "--greedy", "--max-new-tokens", "2", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["template"] == template and "prompt format" not in err
    code, out, err = run_cli("generate", str(tiny_model_dir), "--lora", "fmt", "--template", "alpaca", "--prompt", "x", "--max-new-tokens", "1", "--json")
    assert code == 0 and f"trained with the '{template}' prompt format" in err
