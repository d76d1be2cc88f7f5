"""docs/plugins.md's complete third-party loader, installed as a package and driven like a user would."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
START, END = "<!-- example-plugin:start -->", "<!-- example-plugin:end -->"


def example_source() -> str:
    text = DOCS.read_text(encoding="utf-8")
    block = text[text.index(START) + len(START): text.index(END)].strip()
    assert block.startswith("```python\n") and block.endswith("```")
    return block[len("```python\n"): -3]


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The example as an installed distribution: its module plus dist-info with the entry point."""
    site = tmp_path_factory.mktemp("example-site")
    package = site / "lorakit_fold_on_attach"
    package.mkdir()
    (package / "__init__.py").write_text(example_source())
    dist = site / "lorakit_fold_on_attach-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lorakit-fold-on-attach\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[lorakit]\nfold_on_attach = lorakit_fold_on_attach\n")
    return site


def _lorakit(site: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LORAKIT_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "lorakit", *args], capture_output=True, text=True, env=env, timeout=600)


def test_the_example_imports_only_the_public_api():
    tree = ast.parse(example_source())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {name for name in modules if name.split(".")[0] == "lorakit"} <= {"lorakit", "lorakit.api"}


def test_installed_example_is_listed_chosen_and_generates_like_transformers(example_site, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, lorakit_home, tmp_path):
    listing = _lorakit(example_site, lorakit_home, "loaders", "--json")
    assert listing.returncode == 0, listing.stderr
    record = {r["name"]: r for r in json.loads(listing.stdout)}["fold-on-attach"]
    assert record["available"] and record["removal"] == "fast" and record["max_loras"] is None

    prompt = ["--prompt", "The quick brown fox", "--template", "raw", "--greedy", "--max-new-tokens", "12"]
    loras = ["--lora", f"{tiny_adapter_dir}:0.7", "--lora", f"{tiny_adapter2_dir}:-0.4"]
    ours = _lorakit(example_site, lorakit_home, "generate", str(tiny_model_dir), "--loader", "fold-on-attach", *loras, *prompt)
    theirs = _lorakit(example_site, lorakit_home, "generate", str(tiny_model_dir), "--loader", "transformers", *loras, *prompt)
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout.strip() and ours.stdout == theirs.stdout

    claimed = tmp_path / "claimed-model"
    shutil.copytree(tiny_model_dir, claimed)
    (claimed / "fold-on-attach").write_text("")
    applied = _lorakit(example_site, lorakit_home, "apply", str(claimed), "--lora", str(tiny_adapter_dir), "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["loader"] == "fold-on-attach"  # its resolve_loader hook claimed the folder


def test_example_session_matches_peft_and_detaches_exactly(example_site, tiny_model_dir, tiny_adapter_dir, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lorakit.api import LoadOptions
    from lorakit.inference.planning import open_session
    from lorakit.plugin import host

    monkeypatch.syspath_prepend(str(example_site))  # its dist-info makes the entry point visible
    host.reset_plugin_manager()
    try:
        session, _ = open_session(str(tiny_model_dir), [f"{tiny_adapter_dir}:0.6"], "fold-on-attach", LoadOptions(cpu=True), quiet=True)
        ids = session.tokenizer("The quick brown fox jumps", return_tensors="pt")["input_ids"]
        ours = session.forward_logits(ids)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        reference = PeftModel.from_pretrained(base, tiny_adapter_dir).eval()
        for layer in reference.modules():
            if hasattr(layer, "set_scale"):
                layer.set_scale("default", 0.6)
        with torch.no_grad():
            assert (ours - reference(input_ids=ids).logits).abs().max().item() <= 1e-5
            with reference.disable_adapter():
                bare = reference(input_ids=ids).logits
        session.remove_lora(session.names()[0])
        assert torch.equal(session.forward_logits(ids), bare)  # the originals come back bit for bit
    finally:
        host.reset_plugin_manager()
