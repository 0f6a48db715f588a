"""framework/files.py: a file is replaced whole or not at all."""

import os
import re

import pytest

from framework.files import atomic_open


def test_writes_the_file_and_creates_its_directory(tmp_path):
    path = tmp_path / "new" / "dir" / "report.md"
    with atomic_open(str(path), "w") as f:
        f.write("| a | b |\n")
        assert not path.exists()  # nothing under the final name while writing
    assert path.read_text() == "| a | b |\n"
    assert os.listdir(path.parent) == ["report.md"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "ckpt.npz"
    path.write_bytes(b"good")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_open(str(path), prefix=".ckpt-") as f:
            f.write(b"half a chec")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_replaces_an_existing_file(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    with atomic_open(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["plot.png"]


def test_mode_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"atomic_open: mode must be 'wb' or 'w', got 'a'"):
        with atomic_open(str(tmp_path / "x"), "a"):
            pass


def test_new_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_open(str(tmp_path / "a.png")) as f:
            f.write(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_a_folder_in_the_files_place_is_named_and_nothing_is_written_beside_it(tmp_path):
    """``net.save_params("runs")`` with a folder named so: said plainly, before a temporary
    file is made in the folder's parent (which the rename onto a folder then left to clean)."""
    (tmp_path / "runs").mkdir()
    with pytest.raises(IsADirectoryError, match=re.escape(
            f"Is a directory; expected a file's name: '{tmp_path / 'runs'}'")):
        with atomic_open(str(tmp_path / "runs")) as f:
            f.write(b"never")
    assert os.listdir(tmp_path) == ["runs"] and os.listdir(tmp_path / "runs") == []
