"""Where a dataset's files are looked for on this machine, in order."""

import os

import backends
from backends.trust import untrusted
from framework.datasets.catalog import FILENAMES, PARTS


def cache_root():
    """xpnet's cache folder: ``$XDG_CACHE_HOME/xpnet``, by default ``~/.cache/xpnet``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xpnet")


def find_file(directory, part):
    """The part's file in ``directory``, gzipped or not, or None."""
    gz = os.path.join(directory, FILENAMES[part])
    for path in (gz, gz[:-3]):
        if os.path.isfile(path):
            return path
    return None


def candidates(spec, data_dir):
    """(label, directory) pairs to look in, in order."""
    out = []
    for label, base in (("data_dir argument", data_dir),
                        ("XPNET_DATA_DIR", backends.settings().data_dir)):
        if base:
            base = os.path.expanduser(base)  # XPNET_DATA_DIR="~/data" quoted, say
            out.append((label, os.path.join(base, spec.name)))
            out.append((label, base))
    out.append(("cache", os.path.join(cache_root(), spec.name)))
    out.extend(("Debian package", d) for d in spec.system_dirs)
    return out


#: what to do where xpnet's cache is another user's or others may write it
PRIVATE_CACHE = "xpnet's cache must be yours alone (chmod go-w, or another XDG_CACHE_HOME)"


def cache_distrusted(directory):
    """Why xpnet's cache folder ``directory`` may not be read or written, or None (it is
    missing, or the user's own and writable by no one else): the files a run trains on
    are not taken from a folder others could have put them in."""
    if not os.path.lexists(directory):
        return None
    why = untrusted(directory)
    return None if why is None else \
        f"{why}; {PRIVATE_CACHE}"


def locate(spec, data_dir, looked):
    """``(label, directory, paths)`` of the first candidate holding all four files, else
    ``(None, None, None)``; ``looked`` gets each place passed over, with why (xpnet's
    cache is passed over where :func:`cache_distrusted`)."""
    for label, directory in candidates(spec, data_dir):
        why = cache_distrusted(directory) if label == "cache" else None
        if why is not None:
            looked.append(f"{directory} ({label}): not used: {why}")
            continue
        paths = {part: find_file(directory, part) for part in PARTS}
        missing = [FILENAMES[p] for p, path in paths.items() if path is None]
        if not missing:
            return label, directory, paths
        status = "does not exist" if not os.path.isdir(directory) else \
            "missing " + ", ".join(missing)
        looked.append(f"{directory} ({label}): {status}")
    return None, None, None
