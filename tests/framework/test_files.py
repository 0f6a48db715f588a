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


@pytest.mark.parametrize("stop", [RuntimeError("disk on fire"), KeyboardInterrupt()],
                         ids=["an-error", "ctrl-c"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, stop):
    """An error, or a Ctrl-C (not an Exception), in the middle of the write."""
    path = tmp_path / "ckpt.npz"
    path.write_bytes(b"good")
    with pytest.raises(type(stop)):
        with atomic_open(str(path), prefix=".ckpt-") as f:
            f.write(b"half a chec")
            raise stop
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_the_data_reaches_the_disk_before_the_name_does(tmp_path, monkeypatch):
    """A crash after the rename but before the kernel wrote the pages back would leave an
    empty checkpoint under the final name: the file is fsync'ed first, and its folder
    after the rename, which may otherwise be lost. The real calls run; the test only
    notes their order."""
    import stat
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        calls.append(("fsync folder", st.st_ino) if stat.S_ISDIR(st.st_mode) else
                     ("fsync", st.st_size))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append(("replace", b))
                        or real_replace(a, b))
    path = tmp_path / "ckpt.npz"
    with atomic_open(str(path)) as f:
        f.write(b"12345")
    # then the folder, whose entry the rename changed (POSIX)
    assert calls == [("fsync", 5), ("replace", str(path)),
                     ("fsync folder", os.stat(tmp_path).st_ino)]


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


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    """A checkpoint made private (chmod 600) became readable by everyone (0644, the umask's)
    at the next epoch's save; a script made executable lost it."""
    for mode in (0o600, 0o755, 0o444):
        path = tmp_path / f"run-{mode:o}.npz"
        path.write_bytes(b"old")
        os.chmod(path, mode)
        with atomic_open(str(path)) as f:
            f.write(b"new")
        assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == mode


def test_a_replaced_file_does_not_pass_on_set_id_bits(tmp_path):
    """The permission bits carry over, the set-user-ID, set-group-ID and sticky bits do
    not: new content written over a set-user-ID program (by root, say) must not run as
    that program's owner."""
    for mode in (0o4755, 0o2755, 0o1755, 0o6755):
        path = tmp_path / f"tool-{mode:o}"
        path.write_bytes(b"old")
        os.chmod(path, mode)
        if os.stat(path).st_mode & 0o7777 != mode:  # a file system that drops them itself
            pytest.skip(f"this file system does not keep mode {mode:o}")
        with atomic_open(str(path)) as f:
            f.write(b"new")
        assert path.read_bytes() == b"new"
        assert path.stat().st_mode & 0o7777 == 0o755, f"{mode:o} became {path.stat().st_mode:o}"

def test_a_link_is_written_through_and_stays_a_link(tmp_path):
    """``out/run.npz`` a link to a bigger disk's file: the rename put a plain file in the
    link's place, in ``out/``, and the file on the other disk stayed as it was. As ``open``
    does, the file the link names is replaced (beside it), and the link stays; a link to
    a file not there yet makes it there."""
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    (disk / "run.npz").write_bytes(b"old")
    (out / "run.npz").symlink_to(disk / "run.npz")
    (out / "new.npz").symlink_to(disk / "new.npz")  # dangling until written
    for name in ("run.npz", "new.npz"):
        with atomic_open(str(out / name)) as f:
            f.write(b"new")
        assert (out / name).is_symlink() and (disk / name).read_bytes() == b"new"
    assert sorted(os.listdir(out)) == ["new.npz", "run.npz"]
    assert sorted(os.listdir(disk)) == ["new.npz", "run.npz"]  # no temporary left


def test_a_folder_in_the_files_place_is_named_and_nothing_is_written_beside_it(tmp_path):
    """``net.save_params("runs")`` with a folder named so: said plainly, before a temporary
    file is made in the folder's parent (which the rename onto a folder then left to clean)."""
    (tmp_path / "runs").mkdir()
    with pytest.raises(IsADirectoryError, match=re.escape(
            f"Is a directory; expected a file's name: '{tmp_path / 'runs'}'")):
        with atomic_open(str(tmp_path / "runs")) as f:
            f.write(b"never")
    assert os.listdir(tmp_path) == ["runs"] and os.listdir(tmp_path / "runs") == []


def test_unwritable_says_why_no_file_can_be_written_there(tmp_path):
    """The scripts' ``--out`` and ``--checkpoint`` are checked with it before a long run:
    each reason in its words, None where a file can be written (its folders made)."""
    from framework.files import unwritable
    (tmp_path / "runs").mkdir()
    (tmp_path / "a-file").write_text("x")
    assert unwritable(str(tmp_path / "runs")) == "is a folder; expected a file's name"
    why = unwritable(str(tmp_path / "a-file" / "report.md"))
    assert why.startswith(f"its folder {tmp_path / 'a-file'} cannot be made ("), why
    assert unwritable(str(tmp_path / "new" / "deeper" / "report.md")) is None
    assert (tmp_path / "new" / "deeper").is_dir()
    assert os.listdir(tmp_path / "new" / "deeper") == []  # its probe file gone


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc here")
def test_unwritable_tries_a_file_where_access_says_yes_to_root():
    """``access()`` tells root any folder is writable, /proc's too, where no file can be
    made: ``--plot /proc/curves.png`` passed the check and failed after the whole run."""
    from framework.files import unwritable
    why = unwritable("/proc/curves.png")
    assert why is not None and "/proc" in why, why


def test_unwritable_names_a_folder_the_user_cannot_write():
    """A read-only folder, seen by a user who cannot write it: root writes anywhere, so as
    root the check runs in a child process that has become nobody (uid 65534), on a
    folder under /tmp (pytest's own are root's alone, not even searchable by nobody)."""
    import shutil
    import tempfile
    from tests.conftest import as_another_user
    top = tempfile.mkdtemp(prefix="xpnet-unwritable-")
    folder = os.path.join(top, "shared")
    os.mkdir(folder)
    try:
        os.chmod(top, 0o755)
        os.chmod(folder, 0o555)
        r = as_another_user("from framework.files import unwritable",
                            "print(unwritable(sys.argv[1]))", os.path.join(folder, "report.md"))
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(top)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"its folder {folder} is not writable", r.stdout


def test_a_temporary_name_taken_by_another_file_is_never_written_through(tmp_path,
                                                                        monkeypatch):
    """The temporary file is created exclusively: a file already under the drawn name
    (another writer's, or one planted there) is left as it was and another name drawn."""
    import secrets
    draws = iter(["aaaaaa", "bbbbbb"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(draws))
    planted = tmp_path / ".plot.png.aaaaaa.tmp"
    planted.write_bytes(b"someone else's")
    with atomic_open(str(tmp_path / "plot.png")) as f:
        f.write(b"new")
    assert planted.read_bytes() == b"someone else's"
    assert (tmp_path / "plot.png").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == [".plot.png.aaaaaa.tmp", "plot.png"]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a link another user's needs root")
def test_another_users_link_is_not_followed(tmp_path):
    """A link planted by another user (in /tmp, say) would aim a root process's write at any
    file it names, which the kernel's protected_symlinks refuses to open: it is replaced by
    the file, and the file it named is left alone."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    planted = tmp_path / "run.npz"
    planted.symlink_to(victim)
    os.lchown(planted, 65534, 65534)  # nobody's
    with atomic_open(str(planted)) as f:
        f.write(b"checkpoint")
    assert victim.read_bytes() == b"precious"
    assert not planted.is_symlink() and planted.read_bytes() == b"checkpoint"


def test_a_path_from_home_is_the_home_folders(tmp_path, monkeypatch):
    """``--plot ~/runs/curves.png`` quoted, where no shell expands it: the check before the
    run made a folder named ``~`` in the working directory, and the plot went into it."""
    from framework.files import unwritable
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert unwritable("~/runs/curves.png") is None
    with atomic_open("~/runs/curves.png") as f:
        f.write(b"png")
    assert (home / "runs" / "curves.png").read_bytes() == b"png"
    assert os.listdir(work) == []
