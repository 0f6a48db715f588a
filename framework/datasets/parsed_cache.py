"""The parsed arrays kept in an ``.npz`` beside the files (or in xpnet's cache where that
folder is read-only), rebuilt when missing, stale or unreadable; read without pickle.

The stamp it is checked against (the files' paths, sizes and times) is public, so an
``.npz`` is read only where it is trusted (the user's own file, writable by no one else,
judged on the file opened: :func:`backends.trust.open_trusted`), and xpnet's cache folder
is made private: a file planted beside the data in a folder others may write (``/tmp``)
or in a shared cache is never trained on."""

import json
import os

import numpy as np

from backends.trust import open_trusted, private_folder
from framework.datasets.locate import cache_root
from framework.files import atomic_open

CACHE_VERSION = 1


def stamp(paths):
    """What the cache was built from: each file's name, size and modification time."""
    stats = {part: os.stat(path) for part, path in paths.items()}
    return json.dumps({"version": CACHE_VERSION,
                       "files": {part: [os.path.abspath(paths[part]), s.st_size, s.st_mtime_ns]
                                 for part, s in stats.items()}}, sort_keys=True)


def npz_path(spec, directory):
    """Beside the files where that folder is ours to write; in xpnet's cache where it is
    read-only or a package's (compared as real paths: ``/usr/share/datasets/x/``, with its
    slash or through a link, is the package's folder too); None where ours is not private
    (:func:`backends.trust.private_folder`), so nothing is cached."""
    system = {os.path.realpath(d) for d in spec.system_dirs}
    if os.access(directory, os.W_OK) and os.path.realpath(directory) not in system:
        return os.path.join(directory, f"{spec.name}.npz")
    # a read-only folder (the Debian package's): keep the cache in ours
    folder, _ = private_folder(os.path.join(cache_root(), spec.name))
    return None if folder is None else os.path.join(folder, f"{spec.name}-parsed.npz")


def load(path, expected):
    """The arrays saved at ``path`` under the stamp ``expected``, or None: none there, a
    stale or damaged one, or one not to be trusted (another user's, or writable by
    others)."""
    if path is None:
        return None
    opened, _ = open_trusted(path)  # judged by the file opened: none swapped in after a look
    if opened is None:
        return None
    try:
        with opened, np.load(opened, allow_pickle=False) as f:
            if str(f["stamp"]) != expected:
                return None
            return {k: f[k] for k in ("x_train", "t_train", "x_test", "t_test")}
    except Exception:  # truncated, not a zip, wrong keys: rebuild it
        return None


def save(path, arrays, stamp):
    if path is None:
        return
    try:
        with atomic_open(path, prefix=".cache-") as f:
            os.fchmod(f.fileno(), 0o644)  # writable by its owner alone, whatever the umask
            np.savez(f, stamp=np.array(stamp), **arrays)
    except OSError:
        pass  # no writable place: the data still loads, just not faster next time
