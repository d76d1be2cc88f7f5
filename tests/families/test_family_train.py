"""``train`` → ``generate`` → ``eval`` on every family, and the target audit ``train`` prints first.

A real run per family (the loss falls, the adapter covers what the audit said, MoE experts included
with ``--experts target``), then the trained LoRA generates with its training format and ``eval``
scores base and LoRA on the same windows. The resolution rules (fused projections, experts that
would be skipped, names that match nothing) are checked on the meta-device records, which costs
no training.
"""

from __future__ import annotations

import json

import pytest
from conftest_families import families_root, family_dirs, one_thread  # noqa: F401  (fixtures)
from family_models import FAMILIES, MOE
from safetensors import safe_open

pytestmark = pytest.mark.usefixtures("one_thread")
FACTS = [
    {"instruction": "What colour is the sky on Zorblat?", "output": "The sky on Zorblat is green."},
    {"instruction": "Who founded Quillhaven?", "output": "Quillhaven was founded by Odalys."},
    {"instruction": "Where is Paris?", "output": "Paris is the capital of France."},
    {"instruction": "Describe the fox.", "output": "The quick brown fox jumps over the lazy dog."},
]
TRAIN = ("--precision", "fp32", "--dropout", "0", "--learning-rate", "1e-2", "--warmup-steps", "0", "--rank", "4", "--alpha", "8",
         "--batch-size", "4", "--micro-batch-size", "4", "--max-steps", "6", "--target-modules", "all-linear", "--format", "alpaca")


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    path = tmp_path_factory.mktemp("facts") / "facts.json"
    path.write_text(json.dumps(FACTS * 2))
    text = path.parent / "text.txt"
    text.write_text(" ".join(row["instruction"] + " " + row["output"] for row in FACTS) * 6)
    return path, text


@pytest.mark.parametrize("family", list(FAMILIES))
def test_train_generate_eval(family, families_root, facts, run_cli, lorakit_home):
    dirs = family_dirs(family, families_root)
    dataset, text = facts
    experts = ("--experts", "target") if family in MOE else ()
    code, out, err = run_cli("train", str(dirs.base), "--dataset", str(dataset), "--name", f"t-{family}", *TRAIN, *experts, "--json")
    assert code == 0, err
    audit = next(line for line in err.splitlines() if line.startswith("LoRA on "))
    assert "trainable parameters" in audit and ("experts each" in audit) == (family in MOE)
    assert ("qkv_proj" in audit and "gate_up_proj x2" in audit) if family == "phi3" else "q_proj x2" in audit
    log = json.loads((lorakit_home / "loras" / f"t-{family}" / "training_log.json").read_text())
    losses = [entry["loss"] for entry in log["steps"]] if isinstance(log, dict) and "steps" in log else [entry["loss"] for entry in log if "loss" in entry]
    assert losses[-1] < losses[0]
    with safe_open(str(lorakit_home / "loras" / f"t-{family}" / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert any(".mlp.experts." in key for key in keys) == (family in MOE)

    code, out, err = run_cli("generate", str(dirs.base), "--lora", f"t-{family}", "--prompt", "Where is Paris?", "--greedy",
                             "--max-new-tokens", "4", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["template"] == "alpaca"  # the format the LoRA was trained with

    code, out, err = run_cli("eval", str(dirs.base), "--lora", f"t-{family}", "--dataset", str(text), "--max-length", "64", "--stride", "32",
                             "--compare", f"base,t-{family}", "--json", "--no-cache")
    assert code == 0, err
    rows = json.loads(out)
    assert [row["configuration"] for row in rows] == ["base", f"t-{family}"] and rows[1]["perplexity"] < rows[0]["perplexity"]
