"""Checkpoints that hold the full training state and are never half-written.

``checkpoint-N/`` holds the adapter (PEFT format, usable on its own), the optimizer, scheduler and
grad-scaler states, the RNG states, the parameters and ``trainer_state.json`` (step, epoch, data
position, the log so far). The folder is written under a temporary name and renamed into place
(:func:`lorakit.store.atomic.atomic_folder`), and ``trainer_state.json`` is written last, so a folder named
``checkpoint-N`` that lacks it, or lacks any other part, is ignored by ``--resume``. Optimizer and
RNG states are read back with ``torch.load(weights_only=True)``: no pickle code runs.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.store.atomic import atomic_folder
from lorakit.training.params import PARAMS_FILE

STATE_FILE = "trainer_state.json"
ADAPTER_FILE = "adapter_model.safetensors"
REQUIRED = (ADAPTER_FILE, "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pt", PARAMS_FILE, STATE_FILE)
_NAME = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """``[(step, folder)]`` of the checkpoints that are complete, oldest first."""
    found = []
    if not Path(output).is_dir():
        return found
    for folder in Path(output).iterdir():
        match = _NAME.match(folder.name)
        if not match or not folder.is_dir():
            continue
        if not all((folder / part).is_file() for part in REQUIRED):
            continue
        try:
            state = json.loads((folder / STATE_FILE).read_text())
        except ValueError:
            continue
        if state.get("step") == int(match.group(1)):
            found.append((int(match.group(1)), folder))
    return sorted(found)


def newest_checkpoint(output: Path) -> Path | None:
    found = complete_checkpoints(output)
    return found[-1][1] if found else None


def rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output: Path, step: int, peft_model, optimizer, scheduler, scaler, state: dict, params_json: str) -> Path:
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    target = Path(output) / f"checkpoint-{step}"
    with atomic_folder(target, replace=True) as tmp:
        # The same two files PEFT's save_pretrained writes, without its model card (slow, and
        # written on every checkpoint): a checkpoint folder is itself a loadable adapter.
        weights = {key: value.detach().contiguous().cpu() for key, value in get_peft_model_state_dict(peft_model).items()}
        save_file(weights, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        peft_model.peft_config["default"].save_pretrained(str(tmp))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None}, tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng_state.pt")
        (tmp / PARAMS_FILE).write_text(params_json, encoding="utf-8")
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=1) + "\n")  # last: marks it complete
    return target


def read_state(folder: Path) -> dict:
    return json.loads((Path(folder) / STATE_FILE).read_text())


def load_checkpoint(folder: Path, peft_model, optimizer, scheduler, scaler, device) -> dict:
    """Put the saved weights and states back; returns the trainer state."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    weights = load_file(folder / ADAPTER_FILE, device=str(device))
    result = set_peft_model_state_dict(peft_model, weights)
    unexpected = [key for key in getattr(result, "unexpected_keys", []) or [] if "lora_" in key]
    if unexpected:
        raise LorakitError(f"{folder.name} does not fit this LoRA (unexpected {unexpected[0]})", "resume with the parameters it was trained with")
    try:
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
        schedule = torch.load(folder / "scheduler.pt", map_location="cpu", weights_only=True)
        scheduler.load_state_dict(schedule["scheduler"])
        if scaler is not None and schedule.get("scaler"):
            scaler.load_state_dict(schedule["scaler"])
        restore_rng(torch.load(folder / "rng_state.pt", map_location="cpu", weights_only=True))
    except (RuntimeError, ValueError, KeyError) as error:
        raise LorakitError(f"cannot restore {folder}: {error}", "the checkpoint is damaged; delete it to resume from an older one") from None
    return read_state(folder)


def load_adapter_weights(folder: Path, peft_model, device) -> None:
    """Only the LoRA weights of a checkpoint (``--load-best`` puts the best evaluation's back)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(peft_model, load_file(Path(folder) / ADAPTER_FILE, device=str(device)))
