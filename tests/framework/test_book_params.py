"""framework/book_params.py: the book's pickled parameter files load into xpnet's networks,
and nothing else a pickle may hold is ever run."""

import os
import pickle

import numpy as np
import pytest

import backends
from framework.checkpoint import CheckpointError
from models import MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from tests.conftest import to_host

SMALL_CONV = dict(input_dim=(1, 10, 10), conv_param={"filter_num": 3, "filter_size": 3,
                                                     "pad": 0, "stride": 1},
                  hidden_size=5, output_size=4)


def book_file(path, params, protocol=4):
    """What the book's ``save_params`` writes: ``pickle.dump`` of a dict of float64 arrays."""
    with open(path, "wb") as f:
        pickle.dump({k: np.asarray(v, dtype=np.float64) for k, v in params.items()}, f,
                    protocol=protocol)
    return str(path)


def drawn(net, seed=1):
    """Parameters of ``net``'s names and shapes, other than its own: float64 on the host."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(tuple(v.shape)) for k, v in net.params.items()}


def host_params(net):
    return {k: to_host(v) for k, v in net.params.items()}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_the_books_file_loads_into_the_network_cast_to_its_dtype(tmp_path, protocol):
    net = SimpleConvNet(**SMALL_CONV, seed=0)
    values = drawn(net)
    net.load_params(book_file(tmp_path / "params.pkl", values, protocol))
    for key, value in values.items():
        got = to_host(net.params[key])
        assert got.dtype == np.float32 and got.shape == value.shape
        np.testing.assert_array_equal(got, value.astype(np.float32), err_msg=key)
    # the layers compute with what was loaded: the prediction is the loaded network's
    again = SimpleConvNet(**SMALL_CONV, seed=5)
    again.load_params(str(tmp_path / "params.pkl"))
    x = backends.to_device(np.random.default_rng(2).random((2, 1, 10, 10), dtype=np.float32))
    np.testing.assert_array_equal(to_host(net.predict(x)), to_host(again.predict(x)))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_big_endian_and_column_major_arrays_are_read_as_their_values(tmp_path, protocol):
    """A pickle carries each array's byte order and memory order (a file written on a
    big-endian machine, an array transposed before saving): both are read, so the values
    are the ones written, not their bytes taken in another order."""
    from framework import book_params
    arrays = {"W1": np.arange(6.0).reshape(2, 3).astype(">f8"),
              "W2": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "b1": np.arange(4, dtype=">i4")}
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=protocol))
    got = book_params.read(str(path))
    for key, value in arrays.items():
        assert got[key].dtype == value.dtype, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_the_books_numpy_1_names_are_read_too(tmp_path):
    """The book's files were written by NumPy 1, whose pickles name ``numpy.core.multiarray``
    (NumPy 2 writes ``numpy._core``): such a file, written here by renaming the module."""
    net = TwoLayerNet(4, 3, 2, seed=0)
    values = drawn(net)
    data = pickle.dumps(values, protocol=2)
    if b"numpy._core.multiarray\n" in data:
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in data
    (tmp_path / "old.pkl").write_bytes(data)
    net.load_params(str(tmp_path / "old.pkl"))
    np.testing.assert_array_equal(host_params(net)["W1"], values["W1"].astype(np.float32))


class Planted:
    """What a pickle can carry besides arrays: a call, made by ``pickle.load``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("where", ["the whole file", "one entry"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, where):
    """A pickle whose loading calls ``os.mkdir`` (the book's own ``pickle.load`` would make
    the folder): refused naming what it asked for, and the folder never made."""
    marker = tmp_path / "ran"
    net = TwoLayerNet(4, 3, 2, seed=0)
    planted = Planted(str(marker))
    payload = planted if where == "the whole file" else {**drawn(net), "W1": planted}
    with open(tmp_path / "params.pkl", "wb") as f:
        pickle.dump(payload, f)
    before = host_params(net)
    with pytest.raises(CheckpointError, match=r"a pickle, but not the book's parameters: not "
                                              r"read: it asks for (posix|os|nt)\.mkdir, which "
                                              r"is not part of a NumPy array"):
        net.load_params(str(tmp_path / "params.pkl"))
    assert not marker.exists()
    for key, value in before.items():
        np.testing.assert_array_equal(host_params(net)[key], value)


@pytest.mark.parametrize("change, message", [
    (lambda v: [v["W1"]], "it holds a list; expected the book's dict of arrays"),
    (lambda v: {**v, "W1": "weights"}, "entry 'W1' is str; expected arrays of numbers"),
    (lambda v: {**v, "W1": np.array([None], dtype=object)},
     "entry 'W1' is an array of object; expected arrays of numbers"),
    (lambda v: {**v, "b1": np.array(["0", "0", "0"])},  # text: NumPy would cast it
     "entry 'b1' is an array of <U1; expected arrays of numbers"),
    (lambda v: {**v, 1: v["W1"]}, "entry 1 is not named by a string (int); expected arrays "
                                  "of numbers by parameter name ('W1', 'b1', ...)"),
    (lambda v: {k: a for k, a in v.items() if k != "b2"}, "parameter b2 is missing, expected "
                                                          "shape (2,)"),
    (lambda v: {**v, "W3": np.ones((2, 2))}, "the book's parameters W3 are not TwoLayerNet's "
                                             "(its parameters: W1, b1, W2, b2)"),
    (lambda v: {**v, "W2": np.ones((2, 3))}, "parameter W2 is of shape (2, 3), expected shape "
                                             "(3, 2)"),
    (lambda v: {**v, "b1": np.array([0.0, np.nan, 0.0])}, "parameter b1 holds NaN"),
    (lambda v: {**v, "b1": np.array([True, False, True])},  # a mask, not weights
     "entry 'b1' is an array of bool; expected arrays of numbers"),
])
def test_a_pickle_of_something_else_is_refused_and_nothing_changes(tmp_path, change, message):
    net = TwoLayerNet(4, 3, 2, seed=0)
    with open(tmp_path / "p.pkl", "wb") as f:
        pickle.dump(change(drawn(net)), f)
    before = host_params(net)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        net.load_params(str(tmp_path / "p.pkl"))
    for key, value in before.items():
        np.testing.assert_array_equal(host_params(net)[key], value)


def test_a_truncated_pickle_is_called_damaged(tmp_path):
    net = TwoLayerNet(4, 3, 2, seed=0)
    data = pickle.dumps(drawn(net))
    (tmp_path / "cut.pkl").write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.pkl: a pickle, but not the book's "
                                              r"parameters: damaged pickle \("):
        net.load_params(str(tmp_path / "cut.pkl"))


def test_a_pickle_whose_arrays_lie_outside_it_is_called_damaged(tmp_path):
    """Protocol 5 may leave an array's bytes out of the file (``buffer_callback``): such a
    file does not hold the parameters, and is refused as one that is not whole."""
    net = TwoLayerNet(4, 3, 2, seed=0)
    outside = []
    data = pickle.dumps(drawn(net), protocol=5, buffer_callback=outside.append)
    assert outside  # (the arrays' bytes went there)
    (tmp_path / "bare.pkl").write_bytes(data)
    with pytest.raises(CheckpointError, match=r"bare.pkl: a pickle, but not the book's "
                                              r"parameters: damaged pickle \(UnpicklingError: "
                                              r"pickle stream refers to out-of-band data"):
        net.load_params(str(tmp_path / "bare.pkl"))


def test_the_layer_state_stays_as_it_was(tmp_path):
    """The book's files hold parameters only: batch norm's running averages are not in them,
    and loading one leaves the network's as they were."""
    net = MultiLayerNetExtend(4, [3], 2, use_batchnorm=True, seed=0)
    x = backends.to_device(np.random.default_rng(0).random((5, 4), dtype=np.float32))
    t = backends.to_device(np.array([0, 1, 0, 1, 1]))
    net.loss(x, t, train_flg=True)  # moves the running averages
    state = {k: to_host(v).copy() for k, v in net.state().items()}
    net.load_params(book_file(tmp_path / "p.pkl", drawn(net)))
    assert state and all(np.array_equal(to_host(net.state()[k]), v) for k, v in state.items())


def test_a_missing_file_and_a_folder_are_named_as_checkpoints_are(tmp_path):
    """The book's pickles are looked for first; a missing file or a folder then gets the
    checkpoint's words (a folder was "damaged or not a checkpoint (IsADirectoryError...)")."""
    net = TwoLayerNet(4, 3, 2, seed=0)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        net.load_params(str(tmp_path / "none.pkl"))
    with pytest.raises(CheckpointError, match=r": a folder, not a checkpoint file$"):
        net.load_params(str(tmp_path))


class OtherCodec:
    def __reduce__(self):
        import _codecs
        return (_codecs.encode, ("x", "rot13"))


def test_protocol_2s_bytes_are_latin_1_and_no_other_codec(tmp_path):
    """``_codecs.encode`` is let through for protocol 2's bytes only: another codec is looked
    up by name (which may import it) and is refused."""
    with open(tmp_path / "p.pkl", "wb") as f:
        pickle.dump({"W1": OtherCodec()}, f, protocol=2)
    with pytest.raises(CheckpointError, match=r"not read: it asks for _codecs.encode with "
                                              r"'rot13'; protocol 2's bytes are 'latin1'"):
        TwoLayerNet(4, 3, 2, seed=0).load_params(str(tmp_path / "p.pkl"))


#: the parameters in the book's own files, by name and shape, as read from its repository
#: (oreilly-japan/deep-learning-from-scratch: ch07/params.pkl, ch08/deep_convnet_params.pkl,
#: both float64 and pickled with protocol 4)
BOOK_FILES = {
    "SimpleConvNet": {"W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
                      "W3": (100, 10), "b3": (10,)},
    "DeepConvNet": {"W1": (16, 1, 3, 3), "b1": (16,), "W2": (16, 16, 3, 3), "b2": (16,),
                    "W3": (32, 16, 3, 3), "b3": (32,), "W4": (32, 32, 3, 3), "b4": (32,),
                    "W5": (64, 32, 3, 3), "b5": (64,), "W6": (64, 64, 3, 3), "b6": (64,),
                    "W7": (1024, 50), "b7": (50,), "W8": (50, 10), "b8": (10,)},
}


@pytest.mark.parametrize("name", sorted(BOOK_FILES))
def test_the_books_files_fit_the_networks_built_with_their_defaults(tmp_path, name):
    """``SimpleConvNet()`` and ``DeepConvNet()`` take the book's trained files as they are,
    as the book's chapter 7 and 8 scripts load them: files of those names and shapes."""
    import models
    net = getattr(models, name)(seed=0)
    assert {k: tuple(v.shape) for k, v in net.params.items()} == BOOK_FILES[name]
    values = {k: np.full(shape, 0.5) for k, shape in BOOK_FILES[name].items()}
    net.load_params(book_file(tmp_path / "params.pkl", values))
    assert all(np.all(to_host(v) == 0.5) for v in net.params.values())


def test_save_and_load_take_the_books_default_name(tmp_path, monkeypatch):
    """The book's ``save_params(file_name="params.pkl")`` and ``load_params`` have a default
    name; ours took none (``missing 1 required positional argument: 'path'``). The file
    under it is our .npz archive (xpnet writes no pickles), which load_params reads back."""
    monkeypatch.chdir(tmp_path)
    net = SimpleConvNet(**SMALL_CONV, seed=0)
    net.save_params()
    assert os.listdir(tmp_path) == ["params.pkl"]
    assert (tmp_path / "params.pkl").read_bytes()[:2] == b"PK"  # a zip: NumPy's .npz
    other = SimpleConvNet(**SMALL_CONV, seed=1)
    other.load_params()
    for key, value in host_params(net).items():
        np.testing.assert_array_equal(to_host(other.params[key]), value)


class _Described:
    """Pickles as ``function(*args)`` with ``state`` for the unpickler's BUILD: a pickle as
    NumPy writes one, with the parts a damaged file may hold wrong."""

    def __init__(self, function, args, state):
        self.reduced = (function, args, state)

    def __reduce__(self):
        return self.reduced


def _array_pickle(path, dtype_state=(3, "<", None, None, None, -1, -1, 0), shape=(3,),
                  data=b"\0" * 12):
    from numpy._core.multiarray import _reconstruct  # what NumPy 2's pickles name
    dtype = _Described(np.dtype, ("f4", False, True), dtype_state)
    array = _Described(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data))
    with open(path, "wb") as f:
        pickle.dump({"b1": array}, f, protocol=3)


@pytest.mark.parametrize("change, said", [
    (dict(dtype_state=(3, "<", None, None, None, -1, -1, 63)), "a dtype state"),
    (dict(dtype_state=(3, "<", None, None, None, 4, 4, 255)), "a dtype state"),
    (dict(dtype_state=(3, "<", None, ("a",), {"a": 1}, -1, -1, 0)), "a dtype state"),
    (dict(shape=(3, 1000)), "12 bytes for an array of shape (3, 1000) and dtype float32"),
    (dict(shape=(2**40,)), "a shape of (1099511627776,)"),
    (dict(data=b"\0" * 11), "11 bytes for an array of shape (3,) and dtype float32"),
    (dict(data=b"\0" * 16), "16 bytes for an array of shape (3,) and dtype float32")],
    ids=["dtype-flags", "dtype-size", "dtype-fields", "short-data", "huge-shape", "odd-data",
         "long-data"])
def test_a_damaged_array_or_dtype_is_called_damaged_and_the_process_lives_on(tmp_path, change,
                                                                             said):
    """NumPy's own rebuilders trust the pickle: a damaged dtype state ended in 'SystemError:
    <built-in function load> returned NULL without setting an exception', or an internal
    error, and a file damaged by chance (a fuzzed copy of a parameter file) killed the
    process with a segmentation fault. Each is now a CheckpointError naming the damage,
    read in a child process so that a crash fails this test instead of ending the run."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    path = tmp_path / "params.pkl"
    _array_pickle(path, **change)
    code = ("import sys\nfrom framework.checkpoint import CheckpointError\n"
            "from models import TwoLayerNet\nnet = TwoLayerNet(4, 3, 2, seed=0)\n"
            "try:\n    net.load_params(sys.argv[1])\nexcept CheckpointError as e:\n"
            "    print('refused:', e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.startswith(f"refused: {path}: a pickle, but not the book's parameters: "
                               f"damaged pickle (Damaged: "), r.stdout
    assert said in r.stdout, r.stdout
    _array_pickle(path)  # the same pickle undamaged: read as NumPy would
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert "parameter W1 is missing" in r.stdout, r.stdout + r.stderr
