"""Atomic writes: all or nothing, and the files get the mode a plain open() would give them."""

import os

import pytest

from lorakit.store.atomic import atomic_file, atomic_folder, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_and_folders_get_the_usual_mode(tmp_path, umask_022):
    atomic_write_text(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    with atomic_folder(tmp_path / "out") as folder:
        (folder / "x").write_text("x")
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_replacing_keeps_the_existing_mode(tmp_path, umask_022):
    target = tmp_path / "notes.txt"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_litter(tmp_path):
    target = tmp_path / "out" / "model.gguf"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(target, replace=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and sorted(p.name for p in target.parent.iterdir()) == ["model.gguf"]
    with pytest.raises(FileExistsError):
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"new")
    assert target.read_bytes() == b"old"
