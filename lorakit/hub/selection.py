"""Which files of a repository to fetch.

Without ``--include``: everything except pickle files when safetensors are present (pickle can run code
when loaded; ``training_args.bin`` goes too), weights for other frameworks (TensorFlow, Flax, ONNX...)
when PyTorch weights exist, and git plumbing. ``--include`` patterns switch that off: you get exactly the
files they match. ``--exclude`` always applies. Patterns are shell globs matched against the path in the
repository (``*.safetensors``, ``checkpoint-100/*``) or, for patterns without '/', the file name.
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass, field

from lorakit.errors import LorakitError
from lorakit.hub.listing import RemoteFile

RECORD_FILE = "lorakit_download.json"  # lorakit's own record; a repository file of that name is not fetched
ADAPTER_CONFIG = "adapter_config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
OTHER_FRAMEWORK_SUFFIXES = (".h5", ".msgpack", ".onnx", ".onnx_data", ".tflite", ".ot", ".mlmodel", ".keras")
PLUMBING = {".gitattributes", ".gitignore"}


@dataclass
class Selection:
    files: list[RemoteFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)


def matches(path: str, pattern: str) -> bool:
    pattern = pattern.strip()
    if pattern.endswith("/"):
        pattern += "*"
    if fnmatch.fnmatchcase(path, pattern):
        return True
    return "/" not in pattern and fnmatch.fnmatchcase(posixpath.basename(path), pattern)


def select_files(files: list[RemoteFile], include=(), exclude=()) -> Selection:
    include = [p for p in include if p.strip()]
    exclude = [p for p in exclude if p.strip()]
    chosen: list[RemoteFile] = []
    skipped: list[tuple[str, str]] = []
    for remote in sorted(files, key=lambda f: f.path):
        if remote.path == RECORD_FILE:
            skipped.append((remote.path, "name reserved for lorakit's download record"))
        elif include and not any(matches(remote.path, p) for p in include):
            skipped.append((remote.path, "not matched by --include"))
        elif any(matches(remote.path, p) for p in exclude):
            skipped.append((remote.path, "matched by --exclude"))
        else:
            chosen.append(remote)
    if include:
        return Selection(chosen, skipped)

    names = [f.path.lower() for f in chosen]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    has_torch = has_safetensors or any(n.endswith(PICKLE_SUFFIXES) for n in names)
    kept: list[RemoteFile] = []
    for remote in chosen:
        name = remote.path.lower()
        if has_safetensors and name.endswith(PICKLE_SUFFIXES):
            skipped.append((remote.path, "pickle file; safetensors weights are present"))
        elif has_torch and name.endswith(OTHER_FRAMEWORK_SUFFIXES):
            skipped.append((remote.path, "weights for another framework"))
        elif posixpath.basename(remote.path) in PLUMBING:
            skipped.append((remote.path, "git plumbing"))
        else:
            kept.append(remote)
    ggufs = [f for f in kept if f.path.lower().endswith(".gguf")]
    if len(ggufs) > 1:
        # A GGUF repository usually holds one file per quantization: fetching all of them is rarely wanted.
        listing = ", ".join(f"{f.path} ({f.size or 0:,} bytes)" for f in ggufs[:8])
        raise LorakitError(
            f"the repository has {len(ggufs)} GGUF files, one per quantization: {listing}",
            "pick one with --include, e.g. --include '*Q4_K_M.gguf' --include '*.json'",
        )
    return Selection(kept, sorted(skipped))


def is_adapter_repo(files: list[RemoteFile]) -> bool:
    """An adapter repository has ``adapter_config.json`` at its root, or only in sub-folders and no model config."""
    paths = {f.path for f in files}
    if ADAPTER_CONFIG in paths:
        return True
    return "config.json" not in paths and any(p.endswith("/" + ADAPTER_CONFIG) for p in paths)
