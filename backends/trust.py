"""Whether a file or folder may be trusted to hold what this process loads: the one rule.

A place is trusted when it belongs to the user running xpnet and no one else can write
it (neither its group nor others). The host kernels' cache (a shared library runs code
when loaded) and the datasets' cache (parsed arrays a run trains on) keep to it: what
xpnet makes there it makes private, and what it finds there it loads only when trusted.
"""

import os
import pathlib
import stat


def untrusted(path, kind="folder"):
    """Why ``path`` may not be trusted to hold what this process loads (code, or data it
    trains on), or None: it must be a real folder (or regular file) owned by the user
    running xpnet, writable by no one else."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{path} cannot be examined ({e.strerror})"
    if kind == "folder" and stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)  # a link to a folder: the folder it names must be trusted
        except OSError as e:
            return f"{path} is a broken link ({e.strerror})"
    return _judged(path, st, kind)


def _judged(path, st, kind):
    """:func:`untrusted`'s rule applied to ``st``, what ``os.stat`` says of ``path``."""
    wanted = stat.S_ISDIR if kind == "folder" else stat.S_ISREG
    if not wanted(st.st_mode):
        return f"{path} is not a {'folder' if kind == 'folder' else 'regular file'}"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to user {st.st_uid}, not to this one ({os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by {'others' if st.st_mode & stat.S_IWOTH else 'its group'}"
    return None


def open_trusted(path):
    """``(file, None)``: the regular file ``path`` open for reading in binary, judged by
    :func:`untrusted`'s rule on the file that was opened, not on a look at the path before
    it (in a folder others may write, a file could be swapped in between the look and the
    open); else ``(None, why)``. A link is not followed, and a FIFO planted at the path is
    refused rather than waited on (``O_NONBLOCK``, which does nothing to a regular file)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:  # ELOOP for a link
        return None, f"{path} cannot be opened as a file of this user's ({e.strerror})"
    try:
        why = _judged(path, os.fstat(fd), "file")
    except OSError as e:
        why = f"{path} cannot be examined ({e.strerror})"
    if why is not None:
        os.close(fd)
        return None, why
    return os.fdopen(fd, "rb"), None


def private_folder(folder):
    """``folder`` made if missing (0700, its parents as usual) and checked with
    :func:`untrusted`: ``(folder, None)``, or ``(None, why it will not do)``."""
    folder = pathlib.Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as e:
        return None, f"{folder} cannot be made ({e.strerror})"
    why = untrusted(folder)
    return (None, why) if why else (folder, None)
