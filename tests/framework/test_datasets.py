"""framework/datasets/: IDX parsing, where data is found, the .npz cache, and
downloads tested for real against an HTTP server on 127.0.0.1."""

import gzip
import http.server
import os
import socket
import threading

import numpy as np

import backends
import pytest

from framework import datasets
from framework.datasets import DatasetError, load_dataset, load_fashion_mnist, load_mnist, read_idx
from tests.framework.idx_files import dataset_files, idx_bytes, md5s, write_files

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test reads or writes the user's real cache, or sees their XPNET_* settings."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("XPNET_DATA_DIR", "XPNET_MNIST_MIRROR", "XPNET_FASHION_MNIST_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    backends.reset()  # the settings are read once: the tests' environment from here
    # the Debian folder is a source of its own test; keep it out of the others
    monkeypatch.setattr(datasets.DATASETS["fashion-mnist"], "system_dirs", [])


# --- the parser ------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_load_shapes_dtypes_and_values(tmp_path, gz):
    files, ((xtr, ttr), (xte, tte)) = dataset_files(gz=gz)
    write_files(tmp_path / "d", files)
    (x, t), (x2, t2) = load_mnist(data_dir=str(tmp_path / "d"), download=False)
    assert x.shape == (30, 784) and backends.dtype_name(x.dtype) == "float32"
    assert x2.shape == (20, 784)
    np.testing.assert_array_equal(x, xtr.reshape(30, 784).astype(np.float32) / 255)
    assert t.dtype == np.uint8
    np.testing.assert_array_equal(t, ttr)
    np.testing.assert_array_equal(t2, tte)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_a_data_folder_from_home_is_found(tmp_path, monkeypatch):
    """``data_dir="~/data"`` (or ``XPNET_DATA_DIR`` so, quoted where no shell expands it)
    is the user's home's folder: it was looked for as a folder named ``~``."""
    files, ((xtr, _), _) = dataset_files()
    write_files(tmp_path / "data", files)
    monkeypatch.setenv("HOME", str(tmp_path))
    (x, _), _ = load_mnist(normalize=False, data_dir="~/data", download=False)
    np.testing.assert_array_equal(x, xtr.reshape(len(xtr), -1))
    monkeypatch.setenv("XPNET_DATA_DIR", "~/data")
    backends.reset()
    (x, _), _ = load_mnist(normalize=False, download=False)
    np.testing.assert_array_equal(x, xtr.reshape(len(xtr), -1))


def test_load_options_follow_the_book(tmp_path):
    files, ((xtr, ttr), _) = dataset_files()
    write_files(tmp_path, files)
    (x, t), (x2, _) = load_mnist(normalize=False, flatten=False, one_hot_label=True,
                                 data_dir=str(tmp_path), download=False)
    assert x.shape == (30, 1, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0], xtr)
    assert t.shape == (30, 10) and backends.dtype_name(t.dtype) == "float32"
    np.testing.assert_array_equal(t.argmax(axis=1), ttr)
    assert (t.sum(axis=1) == 1).all()


def corrupt(tmp_path, part, data):
    files, _ = dataset_files()
    files[datasets.FILENAMES[part]] = data
    write_files(tmp_path, files)
    return str(tmp_path / datasets.FILENAMES[part])


@pytest.mark.parametrize("part, make, message", [
    ("train_img", lambda good: b"\x00\x00\x08\x01" + good[4:], "bad magic number 2049, expected 2051"),
    ("train_label", lambda good: b"\x00\x00\x08\x03" + good[4:], "bad magic number 2051, expected 2049"),
    ("train_img", lambda good: good[:-100], "truncated"),
    ("train_img", lambda good: good[:10], "shorter than the 16-byte IDX header"),
    ("train_img", lambda good: good + b"\x00" * 5, "longer than its header says"),
])
def test_corrupt_files_are_named(tmp_path, part, make, message):
    files, _ = dataset_files(gz=False)
    good = files[datasets.FILENAMES[part][:-3]]
    path = corrupt(tmp_path, part, gzip.compress(make(good)))
    with pytest.raises(DatasetError, match=message) as info:
        load_mnist(data_dir=str(tmp_path), download=False)
    assert path in str(info.value)


def test_truncated_gzip_stream(tmp_path):
    files, _ = dataset_files()
    good = files[datasets.FILENAMES["test_img"]]
    path = corrupt(tmp_path, "test_img", good[: len(good) // 2])
    with pytest.raises(DatasetError, match="damaged gzip stream") as info:
        load_mnist(data_dir=str(tmp_path), download=False)
    assert path in str(info.value)


def test_image_and_label_counts_must_agree(tmp_path):
    _, ((_, t), _) = dataset_files()
    corrupt(tmp_path, "train_label", gzip.compress(idx_bytes(t[:29], datasets.LABEL_MAGIC)))
    with pytest.raises(DatasetError, match="has 30 images but .* has 29 labels"):
        load_mnist(data_dir=str(tmp_path), download=False)


@pytest.mark.parametrize("label", [12, 10])  # 10: the first one past the classes
def test_labels_out_of_range(tmp_path, label):
    _, ((_, t), _) = dataset_files()
    bad = t.copy()
    bad[3] = label
    corrupt(tmp_path, "train_label", gzip.compress(idx_bytes(bad, datasets.LABEL_MAGIC)))
    with pytest.raises(DatasetError, match=f"label {label} out of range 0..9"):
        load_mnist(data_dir=str(tmp_path), download=False)


def test_wrong_image_size(tmp_path):
    corrupt(tmp_path, "test_img",
            idx_bytes(np.zeros((20, 27, 28), np.uint8), datasets.IMAGE_MAGIC))
    with pytest.raises(DatasetError, match="images are 27x28, expected 28x28"):
        load_mnist(data_dir=str(tmp_path), download=False)


def test_read_idx_of_a_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(str(tmp_path / "nope"), datasets.IMAGE_MAGIC)


# --- where data is looked for ----------------------------------------------------

def test_search_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    for seed, where in ((0, tmp_path / "arg"), (10, tmp_path / "env" / "mnist"),
                        (20, tmp_path / "cache" / "xpnet" / "mnist")):
        write_files(where, dataset_files(seed=seed)[0])
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "env"))
    backends.reset()
    first = lambda **kw: load_mnist(normalize=False, download=False, **kw)[0][0]  # noqa: E731
    np.testing.assert_array_equal(first(data_dir=str(tmp_path / "arg")),
                                  dataset_files(seed=0)[1][0][0].reshape(30, -1))
    np.testing.assert_array_equal(first(), dataset_files(seed=10)[1][0][0].reshape(30, -1))
    monkeypatch.delenv("XPNET_DATA_DIR")
    backends.reset()
    np.testing.assert_array_equal(first(), dataset_files(seed=20)[1][0][0].reshape(30, -1))


@pytest.mark.parametrize("via", ["data_dir", "XPNET_DATA_DIR"])
def test_the_datasets_own_folder_comes_before_the_folder_itself(tmp_path, monkeypatch, via):
    """``<dir>/mnist/`` first, then ``<dir>/``: one folder can hold both datasets."""
    write_files(tmp_path / "d", dataset_files(seed=0)[0])
    write_files(tmp_path / "d" / "mnist", dataset_files(seed=10)[0])
    kw = {"data_dir": str(tmp_path / "d")} if via == "data_dir" else {}
    if via == "XPNET_DATA_DIR":
        monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "d"))
        backends.reset()
    (x, _), _ = load_mnist(normalize=False, download=False, **kw)
    np.testing.assert_array_equal(x, dataset_files(seed=10)[1][0][0].reshape(30, -1))


def test_offline_error_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "env"))
    backends.reset()
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / datasets.FILENAMES["train_img"]).write_bytes(b"")
    with pytest.raises(DatasetError) as info:
        load_fashion_mnist(data_dir=str(tmp_path / "arg"), download=False)
    msg = str(info.value)
    assert str(tmp_path / "arg") + " (data_dir argument): does not exist" in msg
    assert "(XPNET_DATA_DIR): missing train-labels-idx1-ubyte.gz" in msg
    assert os.path.join(str(tmp_path / "cache"), "xpnet", "fashion-mnist") in msg
    assert "download=False" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte.gz" in msg and "XPNET_DATA_DIR" in msg


def test_load_dataset_by_name(tmp_path):
    write_files(tmp_path / "fashion-mnist", dataset_files(seed=3)[0])
    (x, _), _ = load_dataset("Fashion_MNIST", data_dir=str(tmp_path), download=False)
    assert x.shape == (30, 784)
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; expected one of mnist, fashion-mnist"):
        load_dataset("cifar")


# --- the .npz cache ----------------------------------------------------------------

def test_npz_cache_is_used_then_rebuilt_when_stale_or_damaged(tmp_path, monkeypatch):
    files, ((xtr, _), _) = dataset_files()
    write_files(tmp_path, files)
    load_mnist(data_dir=str(tmp_path), download=False)
    npz = tmp_path / "mnist.npz"
    assert npz.exists()
    with np.load(npz, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["x_train"], xtr)

    real = datasets.read_split
    calls = []
    monkeypatch.setattr(datasets, "read_split", lambda *a: calls.append(a) or real(*a))
    load_mnist(data_dir=str(tmp_path), download=False)
    assert calls == []  # served from the cache

    new_files, ((new_x, _), _) = dataset_files(seed=5)
    write_files(tmp_path, new_files)  # new contents: the stamp no longer matches
    (x, _), _ = load_mnist(normalize=False, data_dir=str(tmp_path), download=False)
    assert len(calls) == 2
    np.testing.assert_array_equal(x, new_x.reshape(30, -1))

    npz.write_bytes(b"not a zip file")
    (x, _), _ = load_mnist(normalize=False, data_dir=str(tmp_path), download=False)
    assert len(calls) == 4
    np.testing.assert_array_equal(x, new_x.reshape(30, -1))


def test_the_parsed_cache_of_a_system_folder_goes_to_our_cache_even_where_writable(
        tmp_path, monkeypatch):
    """The Debian package's folder belongs to the package manager: root can write there,
    and a test run as root in CI must show it is still left alone."""
    system = tmp_path / "usr-share"
    write_files(system, dataset_files(seed=4)[0])
    before = sorted(os.listdir(system))
    monkeypatch.setattr(datasets.DATASETS["fashion-mnist"], "system_dirs", [str(system)])
    (x, _), _ = load_fashion_mnist(normalize=False, download=False)
    np.testing.assert_array_equal(x, dataset_files(seed=4)[1][0][0].reshape(30, -1))
    assert os.access(system, os.W_OK) and sorted(os.listdir(system)) == before
    assert (tmp_path / "cache" / "xpnet" / "fashion-mnist" / "fashion-mnist-parsed.npz").is_file()


@pytest.mark.parametrize("spelling", ["trailing slash", "dot-dot", "symlink"])
def test_the_system_folder_is_left_alone_however_data_dir_spells_it(tmp_path, monkeypatch,
                                                                     spelling):
    """``--data-dir /usr/share/datasets/fashion-mnist/`` wrote a 55 MB cache into the
    package's folder as root: the folder was compared by its spelling."""
    system = tmp_path / "usr-share"
    write_files(system, dataset_files(seed=4)[0])
    before = sorted(os.listdir(system))
    monkeypatch.setattr(datasets.DATASETS["fashion-mnist"], "system_dirs", [str(system)])
    if spelling == "trailing slash":
        data_dir = str(system) + os.sep
    elif spelling == "dot-dot":
        (tmp_path / "other").mkdir()
        data_dir = str(tmp_path / "other" / ".." / "usr-share")
    else:
        os.symlink(system, tmp_path / "link")
        data_dir = str(tmp_path / "link")
    load_fashion_mnist(data_dir=data_dir, normalize=False, download=False)
    assert sorted(os.listdir(system)) == before
    assert (tmp_path / "cache" / "xpnet" / "fashion-mnist" / "fashion-mnist-parsed.npz").is_file()


@pytest.mark.parametrize("normalize", [True, False])
def test_every_array_returned_is_writable_on_the_first_load_as_on_later_ones(tmp_path,
                                                                            normalize):
    """The first load returned views of the files' bytes, read-only (PyTorch warned on
    them, and ``t_train[0] = 1`` failed), the later ones the cache's writable arrays."""
    files, _ = dataset_files()
    write_files(tmp_path / "d", files)
    for load in ("parsed from the files", "read from the cache"):
        (x, t), (xt, tt) = load_mnist(normalize=normalize, data_dir=str(tmp_path / "d"),
                                      download=False)
        for name, a in (("x_train", x), ("t_train", t), ("x_test", xt), ("t_test", tt)):
            assert a.flags.writeable, f"{name} {load} is read-only"
    assert (tmp_path / "d" / "mnist.npz").is_file()


def plant_npz(folder, name, x_train, mode, owner=None):
    """A parsed cache of made-up images under the stamp of the files in ``folder`` (the
    stamp is public: paths, sizes and times), as someone else could write it."""
    from framework.datasets import parsed_cache
    paths = {part: str(folder / datasets.FILENAMES[part]) for part in datasets.PARTS}
    path = folder / name
    with open(path, "wb") as f:
        np.savez(f, stamp=np.array(parsed_cache.stamp(paths)), x_train=x_train,
                 t_train=np.zeros(len(x_train), np.uint8),
                 x_test=np.zeros((20, 28, 28), np.uint8), t_test=np.zeros(20, np.uint8))
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, -1)
    return path


@pytest.mark.parametrize("planted", ["ours (control)", "writable by others",
                                     "writable by its group", "another user's"])
def test_a_parsed_cache_someone_else_could_have_written_is_never_trained_on(tmp_path,
                                                                           planted):
    """An ``.npz`` beside the files with the right stamp was read whoever wrote it: in a
    folder others may write (``/tmp``, sticky or not) anyone could choose what a run
    trains on. It is read only where it is the user's own, writable by no one else, and
    the run parses the files and writes its own in its place."""
    if planted == "another user's" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root (CI runs as root)")
    files, ((xtr, _), _) = dataset_files()
    write_files(tmp_path / "d", files)
    poison = np.full((30, 28, 28), 7, np.uint8)
    mode, owner = {"ours (control)": (0o644, None), "writable by others": (0o666, None),
                   "writable by its group": (0o664, None),
                   "another user's": (0o644, 12345)}[planted]
    npz = plant_npz(tmp_path / "d", "mnist.npz", poison, mode, owner)
    umask = os.umask(0o002)  # a user-private group's umask: new files group-writable
    try:
        (x, _), _ = load_mnist(normalize=False, flatten=False, data_dir=str(tmp_path / "d"),
                               download=False)
    finally:
        os.umask(umask)
    if planted == "ours (control)":  # the stamp is right: this one is read
        np.testing.assert_array_equal(x[:, 0], poison)
        return
    np.testing.assert_array_equal(x[:, 0], xtr)
    st = os.stat(npz)  # replaced by the run's own, whatever the umask
    assert (st.st_uid, st.st_mode & 0o777) == (os.geteuid(), 0o644)
    with np.load(npz, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["x_train"], xtr)


@pytest.mark.parametrize("planted", ["a FIFO", "a link to a parsed cache of ours"])
def test_a_parsed_cache_that_is_no_file_of_ours_is_passed_over_without_waiting(tmp_path,
                                                                              planted):
    """The cache is judged on the file opened (a file swapped in after a look at the path
    would have been read), opened so that a FIFO planted in its place is refused at once,
    not waited on for a writer that never comes, and a link is not followed (whoever may
    write the folder it lies in could aim it elsewhere). The run parses the files."""
    files, ((xtr, _), _) = dataset_files()
    write_files(tmp_path / "d", files)
    npz = tmp_path / "d" / "mnist.npz"
    if planted == "a FIFO":
        os.mkfifo(npz)
    else:
        target = plant_npz(tmp_path / "d", "elsewhere.npz",
                           np.full((30, 28, 28), 7, np.uint8), 0o644)  # read, were it mnist.npz
        os.symlink(target, npz)
    (x, _), _ = load_mnist(normalize=False, flatten=False, data_dir=str(tmp_path / "d"),
                           download=False)
    np.testing.assert_array_equal(x[:, 0], xtr)


def test_xpnet_cache_is_private_and_passed_over_where_others_may_write_it(tmp_path,
                                                                          monkeypatch):
    """The cache holds what a run trains on (the files xpnet downloaded, the parsed copy
    of the Debian package's), so xpnet makes it 0700, and a cache folder others may write
    is neither read from nor written to, and the error says so and what to do."""
    system = tmp_path / "usr-share"
    write_files(system, dataset_files(seed=4)[0])
    monkeypatch.setattr(datasets.DATASETS["fashion-mnist"], "system_dirs", [str(system)])
    load_fashion_mnist(download=False)
    cache = tmp_path / "cache" / "xpnet" / "fashion-mnist"
    assert os.stat(cache).st_mode & 0o777 == 0o700
    assert os.listdir(cache) == ["fashion-mnist-parsed.npz"]

    write_files(tmp_path / "cache" / "xpnet" / "mnist", dataset_files(seed=5)[0])
    (x, _), _ = load_mnist(normalize=False, download=False)  # the user's own folder: read
    np.testing.assert_array_equal(x, dataset_files(seed=5)[1][0][0].reshape(30, -1))
    os.chmod(tmp_path / "cache" / "xpnet" / "mnist", 0o777)
    with pytest.raises(DatasetError, match=r"mnist \(cache\): not used: .*mnist is writable by "
                                           r"others; xpnet's cache must be yours alone"):
        load_mnist(download=False)
    (label, folder), looked = datasets.dataset_folder("mnist")
    assert label is None and "not used" in looked[0]

    # the Debian package's parsed copy: not read from, nor written to, a cache others
    # may write; the files are parsed each time instead
    plant_npz(system, "fashion-mnist-parsed.npz", np.full((30, 28, 28), 7, np.uint8), 0o644)
    os.replace(system / "fashion-mnist-parsed.npz", cache / "fashion-mnist-parsed.npz")
    (x, _), _ = load_fashion_mnist(normalize=False, flatten=False, download=False)
    np.testing.assert_array_equal(x[:, 0], np.full((30, 28, 28), 7, np.uint8))  # control
    os.chmod(cache, 0o777)
    (x, _), _ = load_fashion_mnist(normalize=False, download=False)
    np.testing.assert_array_equal(x, dataset_files(seed=4)[1][0][0].reshape(30, -1))
    with np.load(cache / "fashion-mnist-parsed.npz", allow_pickle=False) as f:
        assert (f["x_train"] == 7).all()  # left as it was: nothing written there


def test_no_pickle_anywhere_in_the_project():
    """Nothing is unpickled, but the book's parameter files by framework/book_params.py's
    unpickler, which rebuilds arrays and nothing else (its own tests plant a pickle that
    would run code): no other module imports pickle, and that one never calls
    pickle.load or pickle.loads."""
    from tests.conftest import ROOT as root
    offenders = []
    for folder in ("framework", "backends", "models", "scripts"):
        for dirpath, _, names in os.walk(os.path.join(root, folder)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    text = open(path).read()
                    if os.path.relpath(path, root) == os.path.join("framework", "book_params.py"):
                        assert "import pickle\n" in text and "pickle.load" not in text
                        assert "class _ArraysOnly(pickle.Unpickler)" in text
                    elif "import pickle" in text or "allow_pickle=True" in text:
                        offenders.append(name)
    assert offenders == []


# --- downloads, against a real HTTP server on 127.0.0.1 ------------------------------

class Server:
    """Serves ``routes`` ({path: bytes}); ``drop`` paths send half and hang up."""

    def __init__(self):
        self.routes, self.drop, self.hits = {}, set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.hits.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.drop:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, prefix, files):
        for name, data in files.items():
            self.routes[f"{prefix}{name}"] = data
        return f"{self.url}{prefix}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def published(monkeypatch):
    """A tiny dataset whose MD5s are patched in as MNIST's published ones."""
    files, arrays = dataset_files(seed=42)
    monkeypatch.setattr(datasets.DATASETS["mnist"], "md5", md5s(files))
    return files, arrays


def cache_files(tmp_path):
    d = tmp_path / "cache" / "xpnet" / "mnist"
    return sorted(os.listdir(d)) if d.exists() else []


def set_mirrors(monkeypatch, *urls):
    monkeypatch.setattr(datasets.DATASETS["mnist"], "mirrors", list(urls))


def test_download_verifies_and_caches(tmp_path, monkeypatch, server, published):
    files, ((xtr, ttr), _) = published
    set_mirrors(monkeypatch, server.serve("/a/", files))
    (x, t), _ = load_mnist(normalize=False)
    np.testing.assert_array_equal(x, xtr.reshape(30, -1))
    np.testing.assert_array_equal(t, ttr)
    assert cache_files(tmp_path) == sorted(list(files) + ["mnist.npz"])
    assert os.stat(tmp_path / "cache" / "xpnet" / "mnist").st_mode & 0o777 == 0o700
    hits = len(server.hits)
    load_mnist()  # now found in the cache: no network
    assert len(server.hits) == hits


def test_no_download_into_a_cache_others_may_write(tmp_path, monkeypatch, server, published):
    files, _ = published
    set_mirrors(monkeypatch, server.serve("/a/", files))
    cache = tmp_path / "cache" / "xpnet" / "mnist"
    cache.mkdir(parents=True)
    os.chmod(cache, 0o777)
    with pytest.raises(DatasetError, match=r"(?s)not used: .* writable by others.*Tried to "
                                           r"download:.*mnist: not downloaded into: .*writable "
                                           r"by others; xpnet's cache must be yours alone"):
        load_mnist()
    assert server.hits == [] and os.listdir(cache) == []
    os.chmod(cache, 0o755)  # the user's own again: downloaded and read
    load_mnist()
    assert cache_files(tmp_path) == sorted(list(files) + ["mnist.npz"])


def test_fallback_after_404(tmp_path, monkeypatch, server, published):
    files, _ = published
    first = server.serve("/empty/", {})
    second = server.serve("/b/", files)
    set_mirrors(monkeypatch, first, second)
    load_mnist()
    assert "/empty/train-images-idx3-ubyte.gz" in server.hits
    assert len(cache_files(tmp_path)) == 5


def test_fallback_after_md5_mismatch(tmp_path, monkeypatch, server, published):
    files, ((xtr, _), _) = published
    tampered = dict(files)
    tampered["train-images-idx3-ubyte.gz"] = dataset_files(seed=7)[0]["train-images-idx3-ubyte.gz"]
    set_mirrors(monkeypatch, server.serve("/bad/", tampered), server.serve("/good/", files))
    (x, _), _ = load_mnist(normalize=False)
    np.testing.assert_array_equal(x, xtr.reshape(30, -1))  # the verified copy, not the tampered one
    assert "/good/train-images-idx3-ubyte.gz" in server.hits


def test_dropped_connection_leaves_no_partial_file(tmp_path, monkeypatch, server, published):
    files, _ = published
    url = server.serve("/drop/", files)
    server.drop.add("/drop/train-images-idx3-ubyte.gz")
    set_mirrors(monkeypatch, url)
    with pytest.raises(DatasetError) as info:
        load_mnist()
    msg = str(info.value)
    assert f"{url}train-images-idx3-ubyte.gz: connection" in msg
    assert "train-images-idx3-ubyte.gz" not in cache_files(tmp_path)
    assert not [n for n in cache_files(tmp_path) if n.startswith(".download-")]


def test_every_failure_is_reported(tmp_path, monkeypatch, server, published):
    files, _ = published
    bad = dict(files)
    bad["train-images-idx3-ubyte.gz"] = b"garbage"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{closed.getsockname()[1]}/"  # bound, never listening
    closed.close()
    set_mirrors(monkeypatch, dead, server.serve("/missing/", {}), server.serve("/bad/", bad))
    with pytest.raises(DatasetError) as info:
        load_mnist()
    msg = str(info.value)
    assert f"{dead}train-images-idx3-ubyte.gz: unreachable" in msg
    assert "/missing/train-images-idx3-ubyte.gz: HTTP 404" in msg
    assert "/bad/train-images-idx3-ubyte.gz: MD5 mismatch: got" in msg
    assert "To fix: fetch the four files by hand" in msg
    # nothing left behind, not even the folder made for the files (an empty folder read
    # as "missing ..." on the next try, as though part had come)
    assert not (tmp_path / "cache" / "xpnet" / "mnist").exists()
    with pytest.raises(DatasetError, match=r"cache/xpnet/mnist \(cache\): does not exist"):
        load_mnist(download=False)
    # but a folder of the user's own, empty before, stays: only what the download made goes
    (tmp_path / "mine").mkdir()
    with pytest.raises(DatasetError):
        load_mnist(data_dir=str(tmp_path / "mine"))
    assert os.listdir(tmp_path / "mine") == []


def test_download_false_never_touches_the_network(monkeypatch, server, published):
    files, _ = published
    set_mirrors(monkeypatch, server.serve("/a/", files))
    with pytest.raises(DatasetError, match="download=False"):
        load_mnist(download=False)
    assert server.hits == []


def test_a_flag_that_is_no_flag_is_refused_before_anything_is_read(monkeypatch, server,
                                                                   published):
    """download="no" downloaded (a string is true); normalize="no" normalized."""
    files, _ = published
    set_mirrors(monkeypatch, server.serve("/a/", files))
    for flag in ("normalize", "flatten", "one_hot_label", "download"):
        with pytest.raises(ValueError, match=rf"^load_dataset\('mnist'\): {flag} must be True "
                                             rf"or False, got 'no'$"):
            load_mnist(**{flag: "no"})
    assert server.hits == []


def test_mirror_environment_variable(tmp_path, monkeypatch, server, published):
    files, _ = published
    set_mirrors(monkeypatch, server.url + "/wrong/")
    monkeypatch.setenv("XPNET_MNIST_MIRROR", server.serve("/env/", files))
    backends.reset()
    load_mnist()
    assert all(hit.startswith("/env/") for hit in server.hits)
    monkeypatch.setenv("XPNET_MNIST_MIRROR", server.url + "/env")
    backends.reset()
    (tmp_path / "cache").rename(tmp_path / "old-cache")
    with pytest.raises(ValueError, match=r"XPNET_MNIST_MIRROR='http://127.0.0.1:\d+/env' must be "
                                         r"a base URL ending in '/'"):
        load_mnist()


def test_download_into_data_dir(tmp_path, monkeypatch, server, published):
    files, _ = published
    set_mirrors(monkeypatch, server.serve("/a/", files))
    load_mnist(data_dir=str(tmp_path / "mine"))
    assert sorted(os.listdir(tmp_path / "mine")) == sorted(list(files) + ["mnist.npz"])



def test_a_damaged_file_says_where_it_was_found_and_deleting_it_mends_the_next_run(
        tmp_path, monkeypatch, server, published):
    """A file damaged after it was verified (a disk, a copy cut short) was named, but the
    user was left to guess whether to delete it, and what the next run would do then."""
    files, ((xtr, _), _) = published
    set_mirrors(monkeypatch, server.serve("/a/", files))
    load_mnist()
    folder = tmp_path / "cache" / "xpnet" / "mnist"
    damaged = folder / datasets.FILENAMES["test_label"]
    damaged.write_bytes(damaged.read_bytes()[:20])
    os.remove(folder / "mnist.npz")  # else the parsed copy is read, not the files
    with pytest.raises(DatasetError, match=r"damaged gzip stream") as info:
        load_mnist()
    assert f"mnist was read from {folder} (cache). To fix: delete the damaged file; the next " \
           f"run looks for it further along the search order" in str(info.value)
    hits = len(server.hits)
    os.remove(damaged)
    (x, _), _ = load_mnist(normalize=False)  # the one file fetched again, verified
    assert len(server.hits) == hits + 1
    np.testing.assert_array_equal(x, xtr.reshape(30, -1))
# --- the real thing, where Debian's package is installed ---------------------------

@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(monkeypatch):
    monkeypatch.setattr(datasets.DATASETS["fashion-mnist"], "system_dirs", [DEBIAN_FASHION])
    (x, t), (x2, t2) = load_fashion_mnist()
    assert x.shape == (60000, 784) and x2.shape == (10000, 784)
    assert np.bincount(t).tolist() == [6000] * 10
    assert np.bincount(t2).tolist() == [1000] * 10
    assert t[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
