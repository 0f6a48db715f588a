"""framework/checkpoint.py and the models' save_params / load_params."""

import io
import json
import os
import re

import numpy as np
import pytest

import backends
from framework import checkpoint
from framework.checkpoint import CheckpointError
from models import TwoLayerNet
from tests.conftest import to_host


def snapshot(net):
    return {k: to_host(v).copy() for k, v in net.params.items()}


def test_round_trip_on_every_backend(backend, tmp_path):
    path = str(tmp_path / "net.npz")
    a = TwoLayerNet(20, 8, 3, seed=1)
    a.save_params(path)
    b = TwoLayerNet(20, 8, 3, seed=2)
    w1 = b.params["W1"]
    b.load_params(path)
    assert b.layers["Affine1"].W is b.params["W1"]  # the layer holds what params holds
    assert (b.params["W1"] is w1) == backend.mutable  # copied into (JAX: a new array)
    for key, value in snapshot(a).items():
        np.testing.assert_array_equal(to_host(b.params[key]), value)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".ckpt-")]


@pytest.mark.parametrize("saved, loaded", [("float64", "float32"), ("float32", "float64")])
def test_a_checkpoint_of_another_dtype_loads_cast_to_the_networks(backend, tmp_path, saved,
                                                                   loaded):
    """A float64 network's checkpoint loads into a float32 one (and back): the values cast
    to the network's dtype, which stays as it was, on every backend (array-api-strict
    refuses to write float64 into a float32 array)."""
    path = str(tmp_path / "net.npz")
    if "float64" in (saved, loaded) and not backend.has_float64():
        pytest.skip(f"{backend.description} has no float64")
    a = TwoLayerNet(20, 8, 3, seed=1, dtype=saved)
    a.save_params(path)
    b = TwoLayerNet(20, 8, 3, seed=2, dtype=loaded)
    b.load_params(path)
    for key, value in snapshot(a).items():
        assert backends.dtype_name(b.params[key].dtype) == loaded, key
        np.testing.assert_array_equal(to_host(b.params[key]), value.astype(loaded))


def test_header_records_architecture_and_dtype(tmp_path):
    backends.use("numpy")
    path = str(tmp_path / "net.npz")
    TwoLayerNet(20, 8, 3, dtype="float64").save_params(path)
    meta, arrays = checkpoint.read(path)
    assert meta["model"] == "TwoLayerNet"
    assert meta["config"] == {"input_size": 20, "hidden_size": 8, "output_size": 3}
    assert meta["dtype"] == "float64"
    assert sorted(arrays) == ["param/W1", "param/W2", "param/b1", "param/b2"]


def test_across_backends(backend, tmp_path):
    """A checkpoint written on each backend loads on NumPy, and one written on NumPy loads
    there (on its device), the same numbers both ways."""
    if backend.name == "numpy":
        pytest.skip("NumPy to NumPy: every other test here")
    with backends.kept():
        for src, dst in ((backend, "numpy"), ("numpy", backend)):
            path = str(tmp_path / f"from-{getattr(src, 'name', src)}.npz")
            use(src)
            a = TwoLayerNet(20, 8, 3, seed=1)
            a.save_params(path)
            use(dst)
            b = TwoLayerNet(20, 8, 3, seed=2)
            b.load_params(path)
            assert backends.backend_of(b.params["W1"]) == backends.current()
            for key, value in snapshot(a).items():
                np.testing.assert_array_equal(to_host(b.params[key]), value)
            x = backends.current().asarray(np.ones((2, 20), dtype=np.float32))
            np.testing.assert_allclose(to_host(b.predict(x)), to_host(a.predict(
                backends.backend_of(a.params["W1"]).asarray(np.ones((2, 20), np.float32)))),
                rtol=1e-5, atol=1e-6)


def use(which):
    """Make ``which`` (a name, or a backend object with its device) the default."""
    return backends.use(which) if isinstance(which, str) else \
        backends.use(which.name, device=which.device)


def test_other_architecture_is_refused_and_nothing_changes(backend, tmp_path):
    path = str(tmp_path / "net.npz")
    TwoLayerNet(20, 8, 3, seed=1).save_params(path)
    b = TwoLayerNet(20, 6, 3, seed=2)
    before = snapshot(b)
    with pytest.raises(CheckpointError, match="hidden_size': 8.*but the network is.*hidden_size': 6"):
        b.load_params(path)
    for key, value in before.items():
        np.testing.assert_array_equal(to_host(b.params[key]), value)


@pytest.mark.parametrize("theirs, mine, named", [
    (dict(weight_decay_lambda=0.1), dict(), "weight_decay_lambda: 0.1 there, 0.0 here"),
    (dict(use_dropout=True), dict(), "use_dropout: True there, False here"),
    (dict(dropout_ration=0.2, use_dropout=True), dict(use_dropout=True),
     "dropout_ration: 0.2 there, 0.5 here"),
    (dict(activation="sigmoid"), dict(), "activation: 'sigmoid' there, 'relu' here")])
def test_a_deep_net_of_other_settings_is_refused_naming_them(tmp_path, theirs, mine, named):
    """Every argument of MultiLayerNetExtend's but the initial scale is the architecture a
    checkpoint records (a decay or dropout recorded wrong would let a run resume on another
    objective, silently)."""
    from models import MultiLayerNetExtend
    path = str(tmp_path / "net.npz")
    MultiLayerNetExtend(6, [5, 4], 3, seed=1, **theirs).save_params(path)
    other = MultiLayerNetExtend(6, [5, 4], 3, seed=2, weight_init_std=0.5, **mine)
    with pytest.raises(CheckpointError, match=f"but the network is .*\\(.*{named}"):
        other.load_params(path)
    MultiLayerNetExtend(6, [5, 4], 3, seed=2, weight_init_std=0.5, **theirs).load_params(path)


def with_a_python_object(data):
    """An .npz whose arrays include one of Python objects (which only unpickling reads)."""
    out = io.BytesIO()
    with np.load(io.BytesIO(data)) as f:
        np.savez(out, **{k: f[k] for k in f.files}, extra=np.array([{"x": 1}], dtype=object))
    return out.getvalue()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[: len(data) // 2], "damaged or not a checkpoint"),
    (lambda data: b"hello", r"damaged or not a checkpoint \(not an .npz archive: it starts with "
                            r"b'hello'\)"),
    (lambda data: data[:200] + bytes(len(data) - 200), "damaged or not a checkpoint"),
    (with_a_python_object, r"damaged or not a checkpoint \(it holds Python objects, and "
                           r"pickled data is never loaded\)"),
])
def test_damaged_file_is_refused_and_nothing_changes(backend, tmp_path, damage, message):
    """Said in our words: never NumPy's advice to load the file with ``allow_pickle``."""
    path = tmp_path / "net.npz"
    TwoLayerNet(20, 8, 3, seed=1).save_params(str(path))
    path.write_bytes(damage(path.read_bytes()))
    b = TwoLayerNet(20, 8, 3, seed=2)
    before = snapshot(b)
    with pytest.raises(CheckpointError, match=message) as info:
        b.load_params(str(path))
    assert str(path) in str(info.value) and "allow_pickle" not in str(info.value)
    for key, value in before.items():
        np.testing.assert_array_equal(to_host(b.params[key]), value)


def rewrite(path, change):
    """The checkpoint at ``path`` written again with ``change(arrays)`` applied."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    np.savez(path, **arrays)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("key, message", [
    ("param/W2", "parameter W2 holds NaN or infinite values"),
    ("state/BatchNorm1/running_var", "layer state BatchNorm1/running_var .*holds NaN or infinite"),
])
def test_a_checkpoint_with_non_finite_values_is_refused_and_nothing_changes(
        backend, tmp_path, key, message, bad):
    def damage(arrays):
        arrays[key] = arrays[key].copy()
        arrays[key].flat[-1] = bad
    assert_a_rewritten_checkpoint_is_refused_and_nothing_changes(tmp_path, damage, message)


def assert_a_rewritten_checkpoint_is_refused_and_nothing_changes(tmp_path, change, message):
    """A batch-norm network's checkpoint rewritten by ``change(arrays)``: loading it into a
    twin raises ``message``, and the twin's parameters and layer state stay as they were."""
    from models import MultiLayerNetExtend
    path = str(tmp_path / "net.npz")
    MultiLayerNetExtend(20, [8], 3, use_batchnorm=True, seed=1).save_params(path)
    rewrite(path, change)
    net = MultiLayerNetExtend(20, [8], 3, use_batchnorm=True, seed=2)
    params, state = snapshot(net), {k: to_host(v).copy() for k, v in net.state().items()}
    with pytest.raises(CheckpointError, match=message):
        net.load_params(path)
    for k, value in params.items():
        np.testing.assert_array_equal(to_host(net.params[k]), value, err_msg=k)
    for k, value in state.items():
        np.testing.assert_array_equal(to_host(net.state()[k]), value, err_msg=k)


def _drop(key):
    return lambda arrays: arrays.pop(key)


def _widen(key):
    def change(arrays):
        arrays[key] = np.concatenate([arrays[key], arrays[key][:1]])
    return change


@pytest.mark.parametrize("change, message", [
    (_drop("param/b1"), r"parameter b1 is missing, expected shape \(8,\)"),
    (_widen("param/W1"), r"parameter W1 is of shape \(21, 8\), expected shape \(20, 8\)"),
    (_drop("state/BatchNorm1/running_mean"),
     r"layer state BatchNorm1/running_mean .* is missing, expected shape \(8,\)"),
    (_widen("state/BatchNorm1/running_var"),
     r"layer state BatchNorm1/running_var .* is of shape \(9,\), expected shape \(8,\)"),
])
def test_a_checkpoint_missing_an_array_or_with_one_misshapen_is_refused(backend, tmp_path, change,
                                                                        message):
    """The header names the same architecture, but an array is gone or has another shape
    (a file edited by hand, or written by another program): refused, naming the array."""
    assert_a_rewritten_checkpoint_is_refused_and_nothing_changes(tmp_path, change, message)


def test_foreign_npz_and_missing_file(tmp_path):
    backends.use("numpy")
    np.savez(tmp_path / "other.npz", W1=np.zeros(3))
    with pytest.raises(CheckpointError, match="no readable header"):
        TwoLayerNet(20, 8, 3).load_params(str(tmp_path / "other.npz"))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        TwoLayerNet(20, 8, 3).load_params(str(tmp_path / "missing.npz"))
    with pytest.raises(CheckpointError) as missing:  # the Trainer's resume reads this way
        checkpoint.read(str(tmp_path / "missing.npz"))
    assert str(missing.value) == f"{tmp_path / 'missing.npz'}: no such checkpoint"
    # another tool's .npz with a JSON header of its own (a list: was an AttributeError)
    for meta, message in (({"format": "other-tool", "model": "TwoLayerNet"},
                           r"not an xpnet checkpoint \(format 'other-tool'\)"),
                          ([1, 2], r"not an xpnet checkpoint \(format \[1, 2\]\)"),
                          ({"format": "xpnet-checkpoint", "version": "2"},
                           r"its header's version '2' is not a number")):
        np.savez(tmp_path / "tool.npz", meta=np.array(json.dumps(meta)), W1=np.zeros(3))
        with pytest.raises(CheckpointError, match=message):
            TwoLayerNet(20, 8, 3).load_params(str(tmp_path / "tool.npz"))


def test_a_folder_and_a_file_this_user_may_not_read_are_named_as_such(tmp_path):
    """Neither is called damaged: a folder is named a folder, and a whole checkpoint
    whose mode denies this user is named unreadable to them. Root reads any file, so as
    root the load runs in a child process that has become nobody (uid 65534), on a
    folder under /tmp (pytest's own are root's alone, not even searchable by nobody)."""
    import shutil
    import tempfile
    from tests.conftest import as_another_user
    backends.use("numpy")
    with pytest.raises(CheckpointError) as folder:
        TwoLayerNet(20, 8, 3).load_params(str(tmp_path))
    assert str(folder.value) == f"{tmp_path}: a folder, not a checkpoint file"
    top = tempfile.mkdtemp(prefix="xpnet-unreadable-")
    path = os.path.join(top, "net.npz")
    try:
        TwoLayerNet(20, 8, 3).save_params(path)
        os.chmod(top, 0o755)
        os.chmod(path, 0o200)  # its owner may write it, no one may read it
        r = as_another_user("from framework.checkpoint import header, CheckpointError",
                            "try:\n    header(sys.argv[1])\n"
                            "except CheckpointError as e:\n    print(e)", path)
        os.chmod(path, 0o600)
        meta = checkpoint.header(path)  # the file was whole all along
    finally:
        shutil.rmtree(top)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{path}: this user may not read it (Permission denied); nothing was read\n"
    assert meta["model"] == "TwoLayerNet"


def test_a_checkpoint_from_a_newer_xpnet_is_refused_naming_both_versions(tmp_path):
    """A file whose layout this xpnet may not know is refused, never half read; the same
    file with this version's number loads (so the refusal is the version's doing)."""
    backends.use("numpy")
    path = str(tmp_path / "net.npz")
    TwoLayerNet(20, 8, 3, seed=1).save_params(path)

    def as_version(version):
        def change(arrays):
            meta = json.loads(str(arrays["meta"]))
            meta["version"] = version
            arrays["meta"] = np.array(json.dumps(meta))
        return change
    rewrite(path, as_version(checkpoint.VERSION + 1))
    net = TwoLayerNet(20, 8, 3, seed=2)
    before = snapshot(net)
    with pytest.raises(CheckpointError, match=rf"written by a newer xpnet \(checkpoint version "
                                              rf"{checkpoint.VERSION + 1}, this one reads up to "
                                              rf"{checkpoint.VERSION}\)"):
        net.load_params(path)
    for k, value in before.items():
        np.testing.assert_array_equal(to_host(net.params[k]), value, err_msg=k)
    for damaged in (True, "1", 1.0):  # JSON's true is no version (though Python's True == 1)
        rewrite(path, as_version(damaged))
        with pytest.raises(CheckpointError, match=re.escape(
                f"its header's version {damaged!r} is not a number")):
            net.load_params(path)
    rewrite(path, as_version(checkpoint.VERSION))
    net.load_params(path)
    np.testing.assert_array_equal(to_host(net.params["W1"]),
                                  to_host(TwoLayerNet(20, 8, 3, seed=1).params["W1"]))


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    backends.use("numpy")
    path = tmp_path / "net.npz"
    TwoLayerNet(20, 8, 3, seed=1).save_params(str(path))
    good = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK partial")
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        TwoLayerNet(20, 8, 3, seed=2).save_params(str(path))
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["net.npz"]  # no temporary file left behind


def test_a_checkpoint_written_before_the_move_resumes_as_an_uninterrupted_run(tmp_path):
    """tests/framework/data/checkpoint-d47c328.npz: a Trainer's checkpoint written by the code
    before issue 21's move (MultiLayerNetExtend with batch norm and dropout, Adam, one
    epoch). It loads, and resuming it for a second epoch gives, bit for bit, what two
    uninterrupted epochs give now."""
    import shutil
    from framework.trainer import Trainer
    from models import MultiLayerNetExtend
    backends.use("numpy")
    rng = np.random.default_rng(0)
    x = rng.random((60, 20), dtype=np.float32)
    t = rng.integers(0, 3, 60)

    def trainer(**kwargs):
        net = MultiLayerNetExtend(20, [8], 3, use_batchnorm=True, use_dropout=True,
                                  dropout_ration=0.2, seed=4)
        return Trainer(net, x, t, x[:20], t[:20], epochs=2, mini_batch_size=20,
                       optimizer="Adam", optimizer_param={"lr": 0.01}, verbose=False, seed=1,
                       **kwargs)
    path = tmp_path / "old.npz"
    shutil.copy(os.path.join(os.path.dirname(__file__), "data", "checkpoint-d47c328.npz"), path)
    resumed = trainer(checkpoint=str(path), resume=True)
    assert resumed.iteration == 3 and resumed.optimizer.iter == 3
    # the first epoch's losses as the old code recorded them
    assert resumed.train_loss_list == [1.3331109285354614, 1.0011672973632812, 1.4211316108703613]
    resumed.train()
    full = trainer()
    full.train()
    # Bit for bit where this CPU's BLAS computes the first epoch as the writer's did. Where
    # its kernels round otherwise (OpenBLAS picks them by CPU: the first loss read
    # 1.333111047744751 on an AMD EPYC's Haswell kernels), the resumed run starts from the
    # writer's epoch: its losses stay within float32's rounding of this CPU's own, and the
    # parameters are not compared (b1 feeds batch norm, which cancels it: its gradient is
    # rounding noise, which Adam turns into steps of lr's size either way)
    if full.train_loss_list[:3] != resumed.train_loss_list[:3]:
        np.testing.assert_allclose(resumed.train_loss_list, full.train_loss_list, rtol=1e-4)
        return
    assert resumed.train_loss_list == full.train_loss_list
    for key, value in full.network.params.items():
        np.testing.assert_array_equal(resumed.network.params[key], value, err_msg=key)
    for key, value in full.network.state().items():
        np.testing.assert_array_equal(resumed.network.state()[key], value, err_msg=key)


def test_a_path_from_home_is_expanded_and_an_empty_one_refused(tmp_path, monkeypatch):
    """``~`` is the user's home, as in a shell: ``save_params("~/runs/a.npz")`` made a
    folder named ``~`` in the working directory (and read from it again), and an empty
    path failed on a temporary file's name (``No such file or directory:
    '/tmp/.ckpt-4d77ecf684a5.tmp' -> ''``)."""
    from framework.trainer import Trainer
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    net = TwoLayerNet(6, 5, 3, seed=0)
    net.save_params("~/runs/a.npz")
    assert (home / "runs" / "a.npz").is_file() and os.listdir(work) == []
    other = TwoLayerNet(6, 5, 3, seed=1)
    other.load_params("~/runs/a.npz")
    for key, value in snapshot(net).items():
        np.testing.assert_array_equal(snapshot(other)[key], value, err_msg=key)
    assert checkpoint.existing("~/runs/a.npz")["model"] == "TwoLayerNet"
    x = np.random.default_rng(0).random((8, 6), dtype=np.float32)
    t = np.arange(8) % 3
    trainer = Trainer(net, x, t, x, t, epochs=1, mini_batch_size=4, verbose=False,
                      checkpoint="~/runs/run.npz")
    trainer.train()
    assert (home / "runs" / "run.npz").is_file() and os.listdir(work) == []
    for save in (net.save_params, other.load_params):
        with pytest.raises(ValueError, match="path is empty; expected a file's name"):
            save("")
    with pytest.raises(ValueError, match="Trainer: checkpoint is empty"):
        Trainer(net, x, t, x, t, epochs=1, mini_batch_size=4, verbose=False, checkpoint="")
    with pytest.raises(TypeError, match="checkpoint's path must be a file's path .*got int"):
        net.save_params(3)
