"""What a finished (or stopped) run leaves in ``loras/NAME/``, and the check that the adapter is real.

Files: ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT format), ``training_parameters.json``
(reusable with ``--config`` / ``--copy-from``), ``training_log.json``, ``prompt_format.json``,
``lorakit_base.json`` and ``loss_curve.png``. Each file is written under a temporary name and
renamed, so an existing LoRA is never left half-replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from lorakit.errors import AdapterError
from lorakit.store.atomic import atomic_file, atomic_write_text

LOG_FILE = "training_log.json"
PLOT_FILE = "loss_curve.png"
VERIFY_ADAPTER = "lorakit_verify"


def verify_adapter(folder: Path, peft_model) -> int:
    """More than zero tensors, none empty, and PEFT loads it back to the trained values.

    Loading it as a second adapter on the live model proves PEFT can read it without a second copy
    of the base. Returns the number of tensors.
    """
    import torch

    from lorakit.store.adapters import read_adapter

    info = read_adapter(folder)  # raises on zero tensors and on empty ones
    trained = {name: param.detach() for name, param in peft_model.named_parameters() if param.requires_grad}
    peft_model.load_adapter(str(folder), adapter_name=VERIFY_ADAPTER, is_trainable=False)
    try:
        checked = 0
        for name, param in peft_model.named_parameters():
            if f".{VERIFY_ADAPTER}." not in name and not name.endswith(f".{VERIFY_ADAPTER}"):
                continue
            original = name.replace(f".{VERIFY_ADAPTER}", ".default")
            if original in trained:
                if not torch.allclose(param.detach().float().cpu(), trained[original].float().cpu()):
                    raise AdapterError(f"the saved adapter differs from the trained weights at {original}")
                checked += 1
        if checked == 0:
            raise AdapterError("PEFT loaded the saved adapter but none of its tensors matches a trained LoRA weight")
    finally:
        peft_model.delete_adapter(VERIFY_ADAPTER)
        peft_model.set_adapter("default")
    return len(info.shapes)


def save_final_adapter(output: Path, peft_model) -> int:
    """Save, verify, then move the two adapter files into place."""
    output = Path(output)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.tmp-", dir=output))
    try:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        count = verify_adapter(tmp, peft_model)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            os.replace(tmp / name, output / name)
        return count
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_log(output: Path, log: list[dict], summary: dict) -> None:
    atomic_write_text(Path(output) / LOG_FILE, json.dumps({"summary": summary, "steps": log}, indent=1) + "\n")


def plot_loss(output: Path, log: list[dict], title: str) -> Path | None:
    """A loss-curve PNG (matplotlib with the Agg backend, imported only here)."""
    steps = [entry["step"] for entry in log if "loss" in entry]
    if not steps:
        return None
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notice is not ours to print
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [entry["loss"] for entry in log if "loss" in entry]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    axis.plot(steps, losses, label="training loss", linewidth=1.5)
    evals = [(entry["step"], entry["eval_loss"]) for entry in log if "eval_loss" in entry]
    if evals:
        axis.plot([s for s, _ in evals], [v for _, v in evals], "o-", label="eval loss")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    target = Path(output) / PLOT_FILE
    try:
        with atomic_file(target, replace=True) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)
    return target


def write_metadata(output: Path, stats, model_config: dict) -> None:
    """Prompt format and base signature (``generate`` warns on a mismatch), from what training read."""
    from lorakit.store.adapters import write_base_signature, write_prompt_format

    record = dict(stats.prompt_format)
    name = record.pop("name")
    write_prompt_format(output, name, **record)
    write_base_signature(output, model_config)
