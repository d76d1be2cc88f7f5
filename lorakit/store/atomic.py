"""Write files and folders under a temporary name and rename them into place when complete."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_folder(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it becomes ``target``.

    On any error the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    usual_mode(tmp)
    try:
        yield tmp
        if target.exists():
            if not replace:
                raise FileExistsError(target)
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def removed_on_failure(path: Path) -> Iterator[None]:
    """Create ``path``'s missing parent folders lazily as usual, but remove the ones this run created
    (if still empty) when the block fails: a failed command leaves no empty folder behind."""
    missing = []
    parent = Path(path).parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    try:
        yield
    except BaseException:
        for folder in missing:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_mode(path: Path, like: Path | None = None) -> None:
    """Give a file made by ``mkstemp``/``mkdtemp`` (0600/0700) the mode a plain ``open`` would have.

    Replacing an existing file keeps that file's mode instead, so a user's ``chmod`` survives; replacing a
    link (a download's link into the read-only HF cache) gives the new, real file the usual mode.
    """
    path = Path(path)
    if like is not None and Path(like).exists() and not Path(like).is_symlink():
        mode = Path(like).stat().st_mode & 0o7777
    else:
        mode = (0o777 if path.is_dir() else 0o666) & ~_umask()
    path.chmod(mode)


@contextlib.contextmanager
def atomic_file(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary file path beside ``target``; on success it becomes ``target``.

    On any error the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if target.exists() and not replace:
            raise FileExistsError(target)
        usual_mode(Path(tmp), like=target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path, replace=True) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so parallel processes convert or write a folder only once.

    The lock file is removed when the holder is done, success or failure, so nothing is left beside
    the folder. A process that was waiting may then hold a lock on the removed file while a newcomer
    creates a new one; so after ``flock`` returns, the lock counts only if the path still names the
    file that was locked (else it is taken again on the new file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except BaseException:
            handle.close()
            raise
        handle.close()  # the holder before us removed the file: lock the one that is there now
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
