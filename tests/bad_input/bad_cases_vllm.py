"""``lorakit vllm setup|where`` (the lorakit-vllm plugin): skipped where the plugin is not installed."""

import sys

from bad_input_table import case


def _no_plugin():
    from importlib.metadata import entry_points

    return None if any(ep.name == "vllm" for ep in entry_points(group="lorakit")) else "the lorakit-vllm plugin is not installed"


V = dict(skip_if=_no_plugin)
CASES = [
    case("vllm-where-no-venv", "vllm", "where", env={"LORAKIT_VLLM_PYTHON": "{tmp}/nowhere/bin/python"},
         expect=("vLLM is not set up", "lorakit vllm setup"), **V),
    case("vllm-where-python-without-vllm", "vllm", "where", env={"LORAKIT_VLLM_PYTHON": sys.executable},
         expect=("vLLM is not installed in", "lorakit vllm setup"), **V),
    case("vllm-unknown-subcommand", "vllm", "start", expect="No such command 'start'", code=2, **V),
    case("vllm-setup-unknown-option", "vllm", "setup", "--venvv", "{tmp}/v", expect="No such option '--venvv'", code=2, **V),
    case("vllm-setup-torch-needs-a-value", "vllm", "setup", "--torch", expect="'--torch' requires an argument", code=2, **V),
]
