"""Synthetic IDX files for the dataset tests: small, deterministic, MNIST-formatted."""

import gzip
import hashlib
import os

import numpy as np

from framework import datasets


def idx_bytes(array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_split(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    t = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(t)
    return x, t


def dataset_files(n_train=30, n_test=20, seed=0, gz=True):
    """{filename: bytes} of a tiny dataset, and the arrays it holds."""
    (xtr, ttr), (xte, tte) = make_split(n_train, seed), make_split(n_test, seed + 1)
    raw = {
        "train_img": idx_bytes(xtr, datasets.IMAGE_MAGIC),
        "train_label": idx_bytes(ttr, datasets.LABEL_MAGIC),
        "test_img": idx_bytes(xte, datasets.IMAGE_MAGIC),
        "test_label": idx_bytes(tte, datasets.LABEL_MAGIC),
    }
    files = {}
    for part, data in raw.items():
        name = datasets.FILENAMES[part]
        if gz:
            files[name] = gzip.compress(data, mtime=0)
        else:
            files[name[:-3]] = data
    return files, ((xtr, ttr), (xte, tte))


def write_files(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def md5s(files):
    """The MD5 table for ``files`` as DatasetSpec.md5 wants it."""
    by_name = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    return {part: by_name[datasets.FILENAMES[part]] for part in datasets.PARTS}
