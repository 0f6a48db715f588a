"""The IDX format of MNIST's files: parsed and checked, gzipped or raw."""

import gzip
import zlib

import numpy as np

from framework.datasets.catalog import DatasetError

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
ROWS = COLS = 28
NUM_CLASSES = 10


def _read_bytes(path):
    """The file's contents, gunzipped if it is gzip (by its magic bytes, not its name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DatasetError(f"{path}: damaged gzip stream ({e})") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e})") from e


def read_idx(path, magic):
    """Parse one IDX file (gzipped or raw) whose magic number must be ``magic``.

    Images (2051) come back as ``uint8 (N, 28, 28)``, labels (2049) as
    ``uint8 (N,)``, both writable arrays of their own. Raises :class:`DatasetError`
    naming the file for a wrong magic number, wrong dimensions, or a length other than
    the header says.
    """
    data = _read_bytes(path)
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise DatasetError(f"{path}: truncated: {len(data)} bytes, shorter than the "
                           f"{header}-byte IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "images" if magic == IMAGE_MAGIC else "labels"
        raise DatasetError(f"{path}: bad magic number {found}, expected {magic} ({kind} file)")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if ndim == 3 and dims[1:] != [ROWS, COLS]:
        raise DatasetError(f"{path}: images are {dims[1]}x{dims[2]}, expected {ROWS}x{COLS}")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(f"{path}: {what}: {len(data)} bytes, header of {dims} "
                           f"implies {expected}")
    # a copy: a view of the bytes is read-only, unlike what the parsed cache returns later
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_split(images_path, labels_path):
    """Images and labels of one split, checked against each other."""
    x = read_idx(images_path, IMAGE_MAGIC)
    t = read_idx(labels_path, LABEL_MAGIC)
    if x.shape[0] != t.shape[0]:
        raise DatasetError(f"{images_path} has {x.shape[0]} images but {labels_path} has "
                           f"{t.shape[0]} labels")
    if t.size and t.max() >= NUM_CLASSES:
        raise DatasetError(f"{labels_path}: label {int(t.max())} out of range 0..{NUM_CLASSES - 1}")
    return x, t
