"""Writing a file so that it is either complete or not there: the one place that does it.

Checkpoints, downloads, the dataset cache, plots and reports all write
through :func:`atomic_open`: the data goes to a temporary file beside the
target, is flushed to disk, and only then renamed over the target, and the
folder is flushed too, so the rename itself outlives a crash. A crash
or an exception mid-write leaves the old file (or none) and no temporary
file behind.
"""

import contextlib
import errno
import os
import secrets
import stat


def user_path(path, what="path"):
    """A file's path as a user gave it (``str`` or ``os.PathLike``), ready to use: ``~``
    expanded as a shell expands it. Python's ``open`` leaves ``~`` alone, and since
    :func:`atomic_open` makes the folders a path names, ``save_params("~/runs/a.npz")``
    made a folder named ``~`` in the working directory. ``ValueError`` for an empty path
    (it failed on a temporary file's name), ``TypeError`` for one that is no path."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise TypeError(f"{what} must be a file's path (str or os.PathLike), got "
                        f"{type(path).__name__}") from None
    if not text:
        raise ValueError(f"{what} is empty; expected a file's name")
    return os.path.expanduser(text)


def unwritable(path):
    """Why no file could be written at ``path``, in words, or ``None`` where one can: a
    folder in its place, or a folder for it that cannot be made or written to (the
    folders it names are made, as :func:`atomic_open` would make them; ``~`` is the home
    folder). For checks made before a long run, not after it."""
    path = user_path(path)
    if os.path.isdir(path):
        return "is a folder; expected a file's name"
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        return f"its folder {folder} cannot be made ({e.strerror or e})"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable"
    try:  # access() answers yes to root where no file can be made (/proc, say): try one
        fd, probe = _create_beside(folder, ".xpnet-probe-")
    except OSError as e:
        return f"no file can be made in its folder {folder} ({e.strerror or e})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.remove(probe)
    return None


@contextlib.contextmanager
def atomic_open(path, mode="wb", prefix=None):
    """Open a temporary file to stand in for ``path``; on a clean exit it becomes ``path``.

    ``mode`` is ``"wb"`` or ``"w"``; ``prefix`` starts the temporary file's
    name (default ``.<name>.``). Missing directories are created. If the
    block raises, the temporary file is removed, ``path`` is untouched, and
    the exception propagates.

    ``~`` is the home folder (:func:`user_path`). As ``open`` would: a symbolic link of
    the user's own at ``path`` is written through (the file it points to is replaced,
    beside it, and the link stays; another user's link is not followed), and a file
    replaced keeps its permission bits (a checkpoint made private with ``chmod 600``
    stays private).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    path = user_path(path)  # "~/plots/a.png": the home folder's, not a folder named "~"
    if os.path.islink(path) and os.lstat(path).st_uid == os.geteuid():
        # the user's own link: else the rename would put a file in the link's place. Not
        # another's, as the kernel's protected_symlinks would not (a link planted in /tmp
        # would aim a root process's write at any file): that one is replaced, or the
        # rename refused where the folder's sticky bit protects it
        path = os.path.realpath(path)
    if os.path.isdir(path):  # the rename would fail, after a temporary file beside the folder
        raise IsADirectoryError(errno.EISDIR, "Is a directory; expected a file's name", path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _create_beside(directory, prefix or f".{os.path.basename(path)}.")
    try:
        with contextlib.suppress(FileNotFoundError):  # the replaced file's permissions
            os.chmod(fd, stat.S_IMODE(os.stat(path).st_mode) & 0o777)  # no set-id bits
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _sync_folder(directory)


def _sync_folder(directory):
    """Make a rename in ``directory`` durable (POSIX: the folder's entry is data of its
    own, which a crash could lose after the file's was written); best effort, as where a
    file system or platform (Windows) cannot open a folder for it there is nothing to do."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_beside(directory, prefix):
    """A new, empty file in ``directory``: ``(fd, path)``.

    Unlike ``tempfile.mkstemp`` (always mode 0600), the file gets the
    permissions any new file would (0666 less the umask), so a plot or a
    report written here is as readable as one written with ``open``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"atomic_open: no free temporary name in {directory}")
