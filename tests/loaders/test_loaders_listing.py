"""`lorakit loaders` lists the four backends with honest records; exllama explains itself without CUDA."""

import importlib.util
import json

import pytest

BACKENDS = {"transformers", "autogptq", "gptq_monkeypatch", "exllama"}
PLUGINS_INSTALLED = all(importlib.util.find_spec(m) is not None for m in ("lorakit_gptq_monkeypatch", "lorakit_exllama"))
needs_plugins = pytest.mark.skipif(not PLUGINS_INSTALLED, reason="install ./plugins/gptq_monkeypatch and ./plugins/exllama")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@needs_plugins
def test_json_lists_all_four_backends_with_their_records(run_cli):
    code, stdout, stderr = run_cli("loaders", "--json")
    assert code == 0, stderr
    records = {record["name"]: record for record in json.loads(stdout)}
    assert BACKENDS <= set(records)
    expected = {
        "transformers": (None, "fast", True, True),
        "exllama": (1, "fast", False, False),
        "autogptq": (1, "reload", False, True),
        "gptq_monkeypatch": (None, "fast", False, True),
    }
    for name, (max_loras, removal, merge, train) in expected.items():
        record = records[name]
        assert (record["max_loras"], record["removal"], record["merge"], record["train"]) == (max_loras, removal, merge, train), name
    if not cuda_available():
        assert records["exllama"]["available"] is False
        assert "needs a CUDA GPU" in records["exllama"]["reason"]


@needs_plugins
def test_table_shows_every_backend_and_why_exllama_cannot_run(run_cli):
    code, stdout, stderr = run_cli("loaders", env={"COLUMNS": "80"})
    assert code == 0 and stderr == ""
    assert all(len(line) < 80 for line in stdout.splitlines()), stdout  # designed for 80 columns, nothing cut
    for name in BACKENDS:
        rows = [line for line in stdout.splitlines() if line.startswith(name + "  ")]
        assert len(rows) == 2, stdout  # a row in both tables, the name whole
    if not cuda_available():
        assert "exllama cannot run here: needs a CUDA GPU" in stdout


@needs_plugins
@pytest.mark.skipif(importlib.util.find_spec("exllamav2") is not None, reason="exllamav2 is installed here")
def test_apply_with_exllama_says_in_one_line_that_it_cannot_run(run_cli, tiny_gptq_dir):
    code, stdout, stderr = run_cli("apply", str(tiny_gptq_dir), "--loader", "exllama")
    assert code != 0 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: loader 'exllama' cannot run here: needs a CUDA GPU")
