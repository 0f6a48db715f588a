"""MNIST and Fashion-MNIST: found locally or downloaded, verified, parsed, cached.

``load_mnist`` has the book's signature and return value; ``load_fashion_mnist``
is the drop-in with the same format, and ``load_dataset(name, ...)`` picks by
name. Data is looked for, in order:

1. the ``data_dir`` argument,
2. ``$XPNET_DATA_DIR``,
3. the cache ``$XDG_CACHE_HOME/xpnet/<dataset>`` (default ``~/.cache/xpnet/<dataset>``),
4. for Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist``
   (``apt-get install dataset-fashion-mnist``),
5. a download into ``data_dir`` if given, else into the cache, from a list
   of mirrors tried in turn (or the one in ``$XPNET_MNIST_MIRROR`` /
   ``$XPNET_FASHION_MNIST_MIRROR``).

In the first two, ``<dir>/<dataset>/`` is tried before ``<dir>/`` itself.
Downloads are checked against the published MD5s and written atomically;
files found locally are checked by the IDX parser instead, since
repackagers recompress them. The parsed arrays are cached in an ``.npz``
(read with ``allow_pickle=False``) that is rebuilt when missing, stale or
unreadable. Nothing is read from a place others could have written to: xpnet's cache
folder is made private (0700) and passed over where it is not the user's alone, and a
parsed ``.npz`` is read only where it is the user's own file, writable by no one else
(:mod:`backends.trust`). This package is host-side I/O: it returns NumPy arrays.

A module a concern: ``catalog.py`` (the datasets, their files, checksums and
mirrors), ``locate.py`` (where files are looked for), ``mirrors.py`` (the
verified download), ``idx.py`` (the file format), ``parsed_cache.py`` (the
``.npz``); this file puts them together.
"""

import os

import numpy as np

from backends.arrays import check_flag
from framework.datasets import mirrors, parsed_cache
from framework.datasets.catalog import DATASETS, FILENAMES, PARTS, DatasetError, DatasetSpec
from framework.datasets.idx import (COLS, IMAGE_MAGIC, LABEL_MAGIC, NUM_CLASSES, ROWS, read_idx,
                                    read_split)
from framework.datasets.locate import cache_root, locate

__all__ = ["load_dataset", "load_mnist", "load_fashion_mnist", "dataset_folder", "DatasetError",
           "DatasetSpec", "DATASETS", "FILENAMES", "PARTS", "IMAGE_MAGIC", "LABEL_MAGIC", "ROWS",
           "COLS", "NUM_CLASSES", "read_idx", "read_split", "cache_root"]


def _parsed(spec, paths, directory):
    stamp = parsed_cache.stamp(paths)
    npz = parsed_cache.npz_path(spec, directory)
    arrays = parsed_cache.load(npz, stamp)
    if arrays is None:
        x_train, t_train = read_split(paths["train_img"], paths["train_label"])
        x_test, t_test = read_split(paths["test_img"], paths["test_label"])
        arrays = {"x_train": x_train, "t_train": t_train, "x_test": x_test, "t_test": t_test}
        parsed_cache.save(npz, arrays, stamp)
    return arrays


# --- public API --------------------------------------------------------------------

def _format(x, t, normalize, flatten, one_hot_label):
    if normalize:
        # one pass, and the same float32 values as x.astype(float32) / 255
        x = np.divide(x, np.float32(255), dtype=np.float32)
    x = x.reshape(x.shape[0], -1) if flatten else x.reshape(x.shape[0], 1, ROWS, COLS)
    if one_hot_label:
        one_hot = np.zeros((t.shape[0], NUM_CLASSES), dtype=np.float32)
        one_hot[np.arange(t.shape[0]), t] = 1.0
        t = one_hot
    return x, t


def _spec(name):
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[key]


def load_dataset(name, normalize=True, flatten=True, one_hot_label=False, *, data_dir=None,
                 download=True):
    """Load ``"mnist"`` or ``"fashion-mnist"`` as ``((x_train, t_train), (x_test, t_test))``.

    Images are float32 in [0, 1] when ``normalize`` (else uint8), shaped
    ``(N, 784)`` when ``flatten`` (else ``(N, 1, 28, 28)``); labels are uint8
    class indices, or float32 one-hot ``(N, 10)`` with ``one_hot_label``.
    ``download=False`` never touches the network. Raises DatasetError,
    saying where it looked and what each download attempt met, when no
    source works. A flag that is not True or False (a string such as ``"no"``, which is
    true: ``download="no"`` would download) is a ``ValueError``, before anything is read.
    """
    normalize, flatten, one_hot_label, download = (
        check_flag(f"load_dataset({name!r})", flag, value) for flag, value in (
            ("normalize", normalize), ("flatten", flatten), ("one_hot_label", one_hot_label),
            ("download", download)))
    spec = _spec(name)
    looked, tried = [], []
    label, directory, paths = locate(spec, data_dir, looked)
    if paths is None and download:
        label, directory = "downloaded", data_dir or os.path.join(cache_root(), spec.name)
        paths = mirrors.fetch_missing(spec, directory, tried, private=not data_dir)
    if paths is None:
        raise DatasetError(_not_found_message(spec, looked, tried, download))
    try:
        arrays = _parsed(spec, paths, directory)
    except DatasetError as e:  # a damaged file found where it was looked for: say what next
        raise DatasetError(
            f"{e}\n{spec.name} was read from {directory} ({label}). To fix: delete the damaged "
            f"file; the next run looks for it further along the search order (the data_dir "
            f"argument, XPNET_DATA_DIR, the cache, Debian's package) and downloads it where "
            f"it finds none.") from e
    train = _format(arrays["x_train"], arrays["t_train"], normalize, flatten, one_hot_label)
    test = _format(arrays["x_test"], arrays["t_test"], normalize, flatten, one_hot_label)
    return train, test


def dataset_folder(name, data_dir=None):
    """Where :func:`load_dataset` finds ``name``'s files now, without reading or
    downloading them: ``(label, folder)``, the label as in the search order above
    (``"data_dir argument"``, ``"XPNET_DATA_DIR"``, ``"cache"``, ``"Debian package"``), or
    ``(None, None)``; and the places passed over before it, each with why, in words."""
    looked = []
    label, directory, _ = locate(_spec(name), data_dir, looked)
    return (label, directory), looked


def _not_found_message(spec, looked, tried, download):
    lines = [f"{spec.name}: no usable copy found.", "Looked in:"]
    lines += [f"  - {entry}" for entry in looked]
    if not download:
        lines.append("Downloading is off (download=False).")
    elif tried:
        lines.append("Tried to download:")
        lines += [f"  - {entry}" for entry in tried]
    target = os.path.join(cache_root(), spec.name)
    urls = ", ".join(mirrors.bases(spec)[0] + FILENAMES[p] for p in PARTS)
    lines.append("To fix: fetch the four files by hand (" + urls + ") into " + target +
                 " or into a folder named by XPNET_DATA_DIR, or point "
                 f"{spec.mirror_env} at a mirror (a base URL ending in '/').")
    if spec.install_hint:
        lines.append(f"On Debian/Ubuntu: {spec.install_hint}")
    return "\n".join(lines)


def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None,
               download=True):
    """MNIST, with the book's signature; see :func:`load_dataset`."""
    return load_dataset("mnist", normalize, flatten, one_hot_label, data_dir=data_dir,
                        download=download)


def load_fashion_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None,
                       download=True):
    """Fashion-MNIST, a drop-in for MNIST; see :func:`load_dataset`."""
    return load_dataset("fashion-mnist", normalize, flatten, one_hot_label, data_dir=data_dir,
                        download=download)
