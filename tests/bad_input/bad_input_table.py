"""The bad-input table: what a case is, the workspace it runs in, and builders of broken inputs.

A case is one command line a user could type with one thing wrong in it. ``test_bad_inputs.py``
runs every case in process through the CLI's real error boundary and asserts what every bad input
must get: a non-zero exit, at most three lines on stderr, no traceback, an ``Error:`` line naming
the problem (``expect``), and the watched folders (the lorakit home, the model and adapter folders,
the case's own folder, which holds any output) byte for byte as they were, with nothing left behind.

Cases live in ``bad_cases_<command>.py`` beside this file, each a module with a ``CASES`` list;
the test collects every such module. A new command adds its own module (``bad_cases_serve.py``).

``argv`` items and ``env`` values are formatted with the workspace's paths: ``{model}``, ``{lora}``,
``{lora2}`` (real PEFT adapters of the tiny model), ``{tmp}`` (the case's folder: setups write there),
``{home}`` (its lorakit home), ``{rows}`` (valid alpaca rows), ``{text}`` (a valid text file),
``{prompts}`` (a valid prompts JSONL).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROWS = [{"instruction": f"Say the number {i}.", "output": f"The number is {i}."} for i in range(6)]
TEXT = ("The lighthouse keeper counted seven gulls every morning and wrote the number in a blue ledger.\n" * 8
        + "\n\n\n" + "When the fog came in from the north he lit the lamp early and sang the old song.\n" * 8)


@dataclass
class Workspace:
    tmp: Path
    home: Path
    model: Path
    lora: Path
    lora2: Path

    def paths(self) -> dict[str, str]:
        return {
            "tmp": str(self.tmp), "home": str(self.home), "model": str(self.model), "lora": str(self.lora),
            "lora2": str(self.lora2), "rows": str(self.tmp / "rows.json"), "text": str(self.tmp / "text.txt"),
            "prompts": str(self.tmp / "prompts.jsonl"),
        }

    def watched(self) -> list[Path]:
        return [self.tmp, self.model, self.lora, self.lora2]

    def prepare(self) -> None:
        (self.tmp / "rows.json").write_text(json.dumps(ROWS))
        (self.tmp / "text.txt").write_text(TEXT)
        (self.tmp / "prompts.jsonl").write_text('{"prompt": "Hello"}\n{"prompt": "Name a colour."}\n')


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: str | tuple[str, ...]
    """Fragment(s) the Error line must contain: what names the problem."""
    setup: Callable[[Workspace], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    code: int | None = None
    """The exact exit code when it matters (2: bad usage); otherwise any non-zero."""
    stdin: str | None = None
    fixtures: tuple[str, ...] = ()
    """Extra pytest fixtures the case needs (requested by name), e.g. a hub stand-in."""
    skip_if: Callable[[], str | None] | None = None
    """Returns a reason to skip here (e.g. a CUDA machine), or None."""

    def fragments(self) -> tuple[str, ...]:
        return (self.expect,) if isinstance(self.expect, str) else tuple(self.expect)


def case(id: str, *argv: str, expect, **extra) -> Case:
    return Case(id, list(argv), expect, **extra)


def write(name: str, content: str | bytes) -> Callable[[Workspace], None]:
    """A setup that writes one file (relative to the case folder)."""
    def setup(ws: Workspace) -> None:
        path = ws.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return setup


def setups(*steps: Callable[[Workspace], None]) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        for step in steps:
            step(ws)
    return setup


# ---- broken adapters, each a copy of the real tiny adapter with one thing wrong ------------------
def _tensors(ws: Workspace) -> dict:
    from safetensors.torch import load_file

    return load_file(str(ws.lora / "adapter_model.safetensors"))


def adapter(name: str, tensors: Callable[[dict], dict] | None = None, config: Callable[[dict], object] | None = None,
            remove: tuple[str, ...] = (), files: dict[str, str | bytes] | None = None) -> Callable[[Workspace], None]:
    """A setup that writes ``{tmp}/<name>``: the tiny adapter with its tensors and/or config changed."""
    def setup(ws: Workspace) -> None:
        from safetensors.torch import save_file

        target = ws.tmp / name
        shutil.copytree(ws.lora, target)
        if tensors is not None:
            save_file(tensors(_tensors(ws)), str(target / "adapter_model.safetensors"))
        if config is not None:
            data = config(json.loads((target / "adapter_config.json").read_text()))
            (target / "adapter_config.json").write_text(data if isinstance(data, str) else json.dumps(data))
        for file in remove:
            (target / file).unlink()
        for file, content in (files or {}).items():
            (target / file).write_bytes(content) if isinstance(content, bytes) else (target / file).write_text(content)
    return setup


def with_config(**values) -> Callable[[dict], dict]:
    return lambda config: {**config, **values}


def first(kind: str, state: dict) -> str:
    return next(key for key in sorted(state) if kind in key)


def poison(kind: str, value: float) -> Callable[[dict], dict]:
    def change(state: dict) -> dict:
        state[first(kind, state)][0, 0] = value
        return state
    return change


def halve_rank(state: dict) -> dict:
    key = first("lora_A", state)
    state[key] = state[key][:2].contiguous()
    return state


def drop_b(state: dict) -> dict:
    key = first("lora_B", state)
    del state[key]
    return state


def widen_input(state: dict) -> dict:
    import torch

    for key in [k for k in state if "q_proj.lora_A" in k]:
        state[key] = torch.zeros(state[key].shape[0], 96)
    return state


def rename(old: str, new: str) -> Callable[[dict], dict]:
    return lambda state: {key.replace(old, new): value for key, value in state.items()}


def pickle_only(evil: bool = False) -> Callable[[Workspace], None]:
    """The adapter's tensors as ``adapter_model.bin`` only; ``evil``: a pickle that would call a function."""
    def setup(ws: Workspace) -> None:
        import torch

        target = ws.tmp / ("evil" if evil else "pickled")
        target.mkdir()
        shutil.copy(ws.lora / "adapter_config.json", target)
        state: dict = dict(_tensors(ws))
        if evil:
            state["payload"] = _Payload()
        torch.save(state, target / "adapter_model.bin")
    return setup


class _Payload:
    """Would call ``print`` when unpickled without weights_only (lorakit never does): a harmless stand-in
    for the code a malicious pickle runs."""

    def __reduce__(self):
        return (print, ("a pickle ran code",))


def empty_adapter(ws: Workspace) -> None:
    from safetensors.torch import save_file

    target = ws.tmp / "empty"
    target.mkdir()
    shutil.copy(ws.lora / "adapter_config.json", target)
    save_file({}, str(target / "adapter_model.safetensors"))


def folder(name: str, files: dict[str, str] | None = None) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        (ws.tmp / name).mkdir(parents=True)
        for file, content in (files or {}).items():
            (ws.tmp / name / file).write_text(content)
    return setup


def lora_in_home(name: str) -> Callable[[Workspace], None]:
    """A finished LoRA under ``loras/<name>`` (what ``train --name`` would refuse to overwrite)."""
    def setup(ws: Workspace) -> None:
        shutil.copytree(ws.lora, ws.home / "loras" / name)
    return setup


def cuda_present() -> str | None:
    import torch

    return "a CUDA GPU is present here" if torch.cuda.is_available() else None
