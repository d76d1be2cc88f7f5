"""``lorakit merge --adapters-only A B ...``: combine LoRAs into a new PEFT adapter folder, written atomically."""

from __future__ import annotations

import json
import time
from pathlib import Path

from lorakit.merging.combine import CombineOptions, combine, provenance
from lorakit.merging.outputs import check_output, refuse_overwriting_inputs
from lorakit.merging.run_merge import load_loras, lora_paths
from lorakit.output.console import info
from lorakit.store import home
from lorakit.store.adapters import (
    BASE_SIGNATURE_FILE,
    CONFIG_FILE,
    PROMPT_FORMAT_FILE,
    SAFETENSORS_FILE,
)
from lorakit.store.atomic import atomic_folder
from lorakit.store.lora_spec import LoraSpec

PROVENANCE_FILE = "lorakit_combination.json"


def combined_output_path(text: str) -> Path:
    """A bare name goes under ``$LORAKIT_HOME/loras`` (where ``--lora NAME`` finds it); a path stays a path."""
    path = Path(text).expanduser()
    if path.is_absolute() or len(path.parts) > 1 or text.startswith("."):
        return path
    return home.loras_dir() / text


def _same_file_in_all(loras, name: str) -> Path | None:
    paths = [lora.path / name for lora in loras]
    if all(path.is_file() for path in paths) and len({path.read_bytes() for path in paths}) == 1:
        return paths[0]
    return None


def update_difference(loras, state: dict, config: dict) -> dict:
    """Largest difference between the combined adapter's updates and sum_i w_i s_i B_i A_i (0 for exact methods)."""
    scaling = float(config["lora_alpha"]) / float(config["r"])
    sums: dict = {}
    for lora in loras:
        for module, record in lora.modules.items():
            delta = (record.B.float() @ record.A.float()) * (lora.weight * record.scaling)
            sums[module] = sums[module] + delta if module in sums else delta
    worst, largest = 0.0, 0.0
    for module, expected in sums.items():
        prefix = f"base_model.model.{module}."
        A = state.get(prefix + "lora_A.weight", state.get(prefix + "lora_embedding_A"))
        B = state.get(prefix + "lora_B.weight", state.get(prefix + "lora_embedding_B"))
        got = (B.float() @ A.float()) * scaling
        worst = max(worst, float((got - expected).abs().max()))
        largest = max(largest, float(expected.abs().max()))
    return {"max_abs_update_diff": worst, "max_abs_update": largest, "relative": worst / max(largest, 1e-12)}


def run_combine(specs: list[LoraSpec], output_text: str, options: CombineOptions, force: bool = False, allow_pickle: bool = False) -> dict:
    from safetensors.torch import save_file

    started = time.perf_counter()
    output = check_output(combined_output_path(output_text), force)
    refuse_overwriting_inputs(output, lora_paths(specs, "--adapters-only"))  # before any tensor is read
    loras = load_loras(specs, None, allow_pickle, where="--adapters-only")
    method = "linear" if len(loras) == 1 else options.method
    info(f"Combining {len(loras)} adapter(s) with --method {method}...")
    state, config = combine(loras, options)
    check = update_difference(loras, state, config)
    with atomic_folder(output, replace=force) as tmp:
        save_file(state, str(tmp / SAFETENSORS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance(loras, options, method), indent=2) + "\n")
        for name in (BASE_SIGNATURE_FILE, PROMPT_FORMAT_FILE):
            same = _same_file_in_all(loras, name)
            if same is not None:
                (tmp / name).write_bytes(same.read_bytes())
    info(f"Wrote {output} (rank {config['r']}); its updates differ from the weighted sum of the inputs by at most "
         f"{check['max_abs_update_diff']:.3g} (largest update value {check['max_abs_update']:.3g})")
    return {
        "output": str(output), "method": method, "rank": config["r"], "modules": sum(key.endswith(("lora_A.weight", "lora_embedding_A")) for key in state),
        "loras": [{"name": lora.name, "path": str(lora.path), "weight": lora.weight} for lora in loras],
        "check": check, "seconds": round(time.perf_counter() - started, 2),
    }
