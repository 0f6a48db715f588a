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
unreadable. This module is host-side I/O: it returns NumPy arrays.
"""

import gzip
import hashlib
import json
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field

import numpy as np

from framework.files import atomic_open

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
ROWS = COLS = 28
NUM_CLASSES = 10
PARTS = ("train_img", "train_label", "test_img", "test_label")
FILENAMES = {
    "train_img": "train-images-idx3-ubyte.gz",
    "train_label": "train-labels-idx1-ubyte.gz",
    "test_img": "t10k-images-idx3-ubyte.gz",
    "test_label": "t10k-labels-idx1-ubyte.gz",
}
CACHE_VERSION = 1


class DatasetError(RuntimeError):
    """A dataset file is missing, damaged, or could not be downloaded."""


@dataclass
class DatasetSpec:
    name: str
    mirrors: list
    mirror_env: str
    md5: dict
    system_dirs: list = field(default_factory=list)
    install_hint: str = ""


DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        mirrors=["https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        mirror_env="XPNET_MNIST_MIRROR",
        md5={"train_img": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train_label": "d53e105ee54ea40749a09fcbcd1e9432",
             "test_img": "9fb629c4189551a2d022fa330f9573f3",
             "test_label": "ec29112dd5afa0611ce80d1b7f02629c"},
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        mirrors=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
        mirror_env="XPNET_FASHION_MNIST_MIRROR",
        md5={"train_img": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
             "train_label": "25c81989df183df01b3e8a0aad5dffbe",
             "test_img": "bef4ecab320f06d8554ea6380940ec79",
             "test_label": "bb300cfdad3c16e7a12a480ee83cd310"},
        system_dirs=["/usr/share/datasets/fashion-mnist"],
        install_hint="apt-get install dataset-fashion-mnist",
    ),
}


# --- parsing --------------------------------------------------------------------

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
    ``uint8 (N,)``. Raises :class:`DatasetError` naming the file for a wrong
    magic number, wrong dimensions, or a length other than the header says.
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
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


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


# --- finding local files --------------------------------------------------------

def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xpnet")


def _find_file(directory, part):
    """The part's file in ``directory``, gzipped or not, or None."""
    gz = os.path.join(directory, FILENAMES[part])
    for path in (gz, gz[:-3]):
        if os.path.isfile(path):
            return path
    return None


def _candidates(spec, data_dir):
    """(label, directory) pairs to look in, in order."""
    out = []
    for label, base in (("data_dir argument", data_dir),
                        ("XPNET_DATA_DIR", os.environ.get("XPNET_DATA_DIR"))):
        if base:
            out.append((label, os.path.join(base, spec.name)))
            out.append((label, base))
    out.append(("cache", os.path.join(cache_root(), spec.name)))
    out.extend(("Debian package", d) for d in spec.system_dirs)
    return out


def _locate(spec, data_dir, looked):
    for label, directory in _candidates(spec, data_dir):
        paths = {part: _find_file(directory, part) for part in PARTS}
        missing = [FILENAMES[p] for p, path in paths.items() if path is None]
        if not missing:
            return directory, paths
        status = "does not exist" if not os.path.isdir(directory) else \
            "missing " + ", ".join(missing)
        looked.append(f"{directory} ({label}): {status}")
    return None, None


# --- downloading ----------------------------------------------------------------

def _mirrors(spec):
    override = os.environ.get(spec.mirror_env)
    if override is not None:
        if not override.endswith("/"):
            raise ValueError(f"{spec.mirror_env}={override!r} must be a base URL ending in '/', "
                             f"e.g. {spec.mirrors[0]}")
        return [override]
    return list(spec.mirrors)


def _fetch(url, dest, md5, timeout=60):
    """Download ``url`` to ``dest`` through a temporary file, checking its MD5.

    The file appears under its final name only when complete and verified;
    on any failure the temporary file is removed and DatasetError says why.
    """
    from tqdm.auto import tqdm

    with atomic_open(dest, prefix=".download-") as out:
        digest = hashlib.md5()
        received = 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = response.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                with tqdm(total=total, unit="B", unit_scale=True, leave=False,
                          desc=os.path.basename(dest)) as bar:
                    while True:
                        chunk = response.read(1 << 16)
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            raise DatasetError(f"HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise DatasetError(f"unreachable ({e.reason})") from None
        except (OSError, ValueError) as e:  # includes http.client.IncompleteRead, timeouts
            raise DatasetError(f"connection failed after {received} bytes "
                               f"({type(e).__name__}: {e})") from None
        if total is not None and received != total:
            raise DatasetError(f"connection dropped after {received} of {total} bytes")
        if digest.hexdigest() != md5:
            raise DatasetError(f"MD5 mismatch: got {digest.hexdigest()}, expected {md5}")


def _download(spec, directory, tried):
    """Fetch every missing part into ``directory``; returns the paths, or None."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for part in PARTS:
        existing = _find_file(directory, part)
        if existing:
            paths[part] = existing
            continue
        dest = os.path.join(directory, FILENAMES[part])
        for base in _mirrors(spec):
            url = base + FILENAMES[part]
            try:
                _fetch(url, dest, spec.md5[part])
            except DatasetError as e:
                tried.append(f"{url}: {e}")
                continue
            paths[part] = dest
            break
        else:
            return None
    return paths


# --- the .npz cache ---------------------------------------------------------------

def _stamp(paths):
    """What the cache was built from: each file's name, size and modification time."""
    stats = {part: os.stat(path) for part, path in paths.items()}
    return json.dumps({"version": CACHE_VERSION,
                       "files": {part: [os.path.abspath(paths[part]), s.st_size, s.st_mtime_ns]
                                 for part, s in stats.items()}}, sort_keys=True)


def _npz_path(spec, directory):
    if os.access(directory, os.W_OK) and directory not in spec.system_dirs:
        return os.path.join(directory, f"{spec.name}.npz")
    # a read-only folder (the Debian package's): keep the cache in ours
    return os.path.join(cache_root(), spec.name, f"{spec.name}-parsed.npz")


def _load_npz(path, stamp):
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["stamp"]) != stamp:
                return None
            return {k: f[k] for k in ("x_train", "t_train", "x_test", "t_test")}
    except Exception:  # missing, truncated, not a zip, wrong keys: rebuild it
        return None


def _save_npz(path, arrays, stamp):
    try:
        with atomic_open(path, prefix=".cache-") as f:
            np.savez(f, stamp=np.array(stamp), **arrays)
    except OSError:
        pass  # no writable place: the data still loads, just not faster next time


def _parsed(spec, paths, directory):
    stamp = _stamp(paths)
    npz = _npz_path(spec, directory)
    arrays = _load_npz(npz, stamp)
    if arrays is None:
        x_train, t_train = read_split(paths["train_img"], paths["train_label"])
        x_test, t_test = read_split(paths["test_img"], paths["test_label"])
        arrays = {"x_train": x_train, "t_train": t_train, "x_test": x_test, "t_test": t_test}
        _save_npz(npz, arrays, stamp)
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
    source works.
    """
    spec = _spec(name)
    looked, tried = [], []
    directory, paths = _locate(spec, data_dir, looked)
    if paths is None and download:
        directory = data_dir or os.path.join(cache_root(), spec.name)
        paths = _download(spec, directory, tried)
    if paths is None:
        raise DatasetError(_not_found_message(spec, looked, tried, download))
    arrays = _parsed(spec, paths, directory)
    train = _format(arrays["x_train"], arrays["t_train"], normalize, flatten, one_hot_label)
    test = _format(arrays["x_test"], arrays["t_test"], normalize, flatten, one_hot_label)
    return train, test


def _not_found_message(spec, looked, tried, download):
    lines = [f"{spec.name}: no usable copy found.", "Looked in:"]
    lines += [f"  - {entry}" for entry in looked]
    if not download:
        lines.append("Downloading is off (download=False).")
    elif tried:
        lines.append("Tried to download:")
        lines += [f"  - {entry}" for entry in tried]
    target = os.path.join(cache_root(), spec.name)
    urls = ", ".join(_mirrors(spec)[0] + FILENAMES[p] for p in PARTS)
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
