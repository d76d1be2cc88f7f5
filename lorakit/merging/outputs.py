"""Where a merge writes: refuse an existing output without --force and an unwritable place, before any work.

Files are written under a temporary name beside the target and renamed when complete, so a failed or
interrupted merge leaves nothing behind and never touches an existing output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lorakit.errors import LorakitError


def check_output(target: Path, force: bool, folder: bool = True) -> Path:
    """``target`` with ``~`` expanded, after refusing what cannot or must not be written."""
    target = Path(target).expanduser()
    if target.exists() or target.is_symlink():
        if not force:
            raise LorakitError(f"output '{target}' already exists", "pass --force to replace it, or choose another --output")
        if target.is_dir() != folder:
            kind, wanted = ("a folder", "a file") if target.is_dir() else ("a file", "a folder")
            raise LorakitError(f"output '{target}' is {kind} and this format writes {wanted}; --force will not replace it", "choose another --output")
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise LorakitError(f"cannot write '{target}': '{ancestor}' is a file, not a folder", "choose another --output")
    try:  # os.access is not enough (read-only mounts, root): try it
        probe = tempfile.mkdtemp(prefix=".lorakit-write-test-", dir=ancestor)
        os.rmdir(probe)
    except OSError as error:
        raise LorakitError(f"cannot write to '{ancestor}' ({error.strerror or error})", "choose a folder you can write to with --output") from error
    return target


def refuse_overwriting_inputs(output: Path, inputs: list[Path]) -> None:
    """--force replaces an output, never a model or adapter the command reads; and an output never
    goes inside an input folder (a merged model inside its base's folder would be read as part of it)."""
    target = Path(output).expanduser().resolve()
    for path in inputs:
        source = Path(path).resolve()
        if source == target:
            raise LorakitError(f"--output '{output}' is one of this command's inputs", "write the result somewhere else")
        if source.is_dir() and source in target.parents:
            raise LorakitError(f"--output '{output}' is inside the input folder '{path}'", "write the result outside the model and adapter folders")
        if target in source.parents:
            raise LorakitError(f"--output '{output}' holds the input '{path}', which --force would delete", "write the result somewhere else")
