"""Property-based tests of the public API (Hypothesis): generated shapes, dtypes and bytes.

Bounded for CI by the ``ci`` profile (tests/conftest.py); ``pytest
--hypothesis-profile=thorough tests/test_properties.py`` runs many more
cases. A failure prints the example and a ``@reproduce_failure`` blob to
replay it.
"""

import gzip
import io
import json

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the property tests need Hypothesis (the test extra)")

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import backends  # noqa: E402
from framework import checkpoint, datasets  # noqa: E402
from framework.layers import (Affine, BatchNormalization, Convolution, Dropout,  # noqa: E402
                              Pooling, Relu, Sigmoid, SoftmaxWithLoss)
from framework.testing import check_backward  # noqa: E402
from models import MultiLayerNetExtend  # noqa: E402
from tests.conftest import to_host  # noqa: E402

# the xp fixture only selects a module: sharing it between examples is safe
FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = st.sampled_from(["float32", "float64"])


def array(xp, shape, dtype, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return backends.to_device(scale * rng.standard_normal(shape), dtype)


# --- layers: shape and dtype contracts, and backward on small cases -------------------------

@FIXTURES
@given(n=st.integers(1, 5), d_in=st.integers(1, 6), d_out=st.integers(1, 6), dtype=DTYPES,
       seed=st.integers(0, 2**16))
def test_affine_contract(xp, n, d_in, d_out, dtype, seed):
    layer = Affine(array(xp, (d_in, d_out), dtype, seed), array(xp, (d_out,), dtype, seed + 1))
    x = array(xp, (n, d_in), dtype, seed + 2)
    out = layer.forward(x)
    assert out.shape == (n, d_out) and backends.dtype_name(out.dtype) == np.dtype(dtype).name
    dx = layer.backward(xp.ones_like(out))
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert layer.dW.shape == layer.W.shape and layer.db.shape == layer.b.shape
    if dtype == "float64":
        check_backward(Affine(layer.W, layer.b), x, params=("W", "b"), mode="random")


@FIXTURES
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), dtype=DTYPES,
       kind=st.sampled_from(["relu", "sigmoid", "dropout", "batchnorm"]),
       seed=st.integers(0, 2**16))
def test_elementwise_and_normalising_layers_keep_shape_and_dtype(xp, shape, dtype, kind, seed):
    x = array(xp, shape, dtype, seed, scale=2.0)
    features = int(np.prod(shape[1:]))
    make = {"relu": Relu, "sigmoid": Sigmoid, "dropout": lambda: Dropout(0.3, seed=seed),
            "batchnorm": lambda: BatchNormalization(xp.ones(features, dtype=getattr(xp, dtype)),
                                                    xp.zeros(features, dtype=getattr(xp, dtype)))}[kind]
    layer = make()
    if kind == "batchnorm" and shape[0] == 1:  # its own mean: beta, with a warning
        with pytest.warns(UserWarning, match="a training batch of one sample"):
            out = layer.forward(x)
        assert out.shape == x.shape and out.dtype == x.dtype
        out = layer.forward(x, train_flg=False)  # the running averages normalise one
        assert out.shape == x.shape and out.dtype == x.dtype
        return
    out = layer.forward(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    dx = layer.backward(xp.ones_like(out))
    assert dx.shape == x.shape and dx.dtype == x.dtype
    if dtype == "float64" and kind != "relu":
        params = ("gamma", "beta") if kind == "batchnorm" else ()
        # a batch of two nearly equal samples makes batch norm sharply curved: central
        # differences of h = 1e-4 are then off by 1e-5 relative (found by this test)
        check_backward(make(), x, params=params, mode="random",
                       rtol=1e-3 if kind == "batchnorm" else None)


@FIXTURES
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(3, 7), w=st.integers(3, 7),
       fn=st.integers(1, 3), fh=st.integers(1, 3), fw=st.integers(1, 3),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dtype=DTYPES,
       seed=st.integers(0, 2**16))
def test_convolution_contract(xp, n, c, h, w, fn, fh, fw, stride, pad, dtype, seed):
    layer = Convolution(array(xp, (fn, c, fh, fw), dtype, seed),
                        array(xp, (fn,), dtype, seed + 1), stride, pad)
    x = array(xp, (n, c, h, w), dtype, seed + 2)
    out = layer.forward(x)
    out_h, out_w = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    assert out.shape == (n, fn, out_h, out_w) and out.dtype == x.dtype
    dx = layer.backward(xp.ones_like(out))
    assert dx.shape == x.shape and dx.dtype == x.dtype and layer.dW.shape == layer.W.shape
    if dtype == "float64":
        check_backward(Convolution(layer.W, layer.b, stride, pad), x, params=("W", "b"),
                       mode="random")


@FIXTURES
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 7), w=st.integers(2, 7),
       ph=st.integers(1, 3), pw=st.integers(1, 3), stride=st.integers(1, 3),
       pad=st.integers(0, 1), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_pooling_contract(xp, n, c, h, w, ph, pw, stride, pad, dtype, seed):
    assume(ph <= h + 2 * pad and pw <= w + 2 * pad)
    if 2 * pad > min(ph, pw):  # a window of padding alone (found by this test)
        with pytest.raises(ValueError, match="Pooling: pad must be at most half the window"):
            Pooling(ph, pw, stride, pad)
        return
    layer = Pooling(ph, pw, stride, pad)
    # distinct values: no two maxima of a window within a central difference of each other
    host = np.random.default_rng(seed).permutation(n * c * h * w).reshape(n, c, h, w) / 7.0
    x = backends.to_device(host, dtype)
    out = layer.forward(x)
    assert out.shape == (n, c, (h + 2 * pad - ph) // stride + 1,
                         (w + 2 * pad - pw) // stride + 1) and out.dtype == x.dtype
    assert layer.backward(xp.ones_like(out)).shape == x.shape
    if dtype == "float64":
        check_backward(Pooling(ph, pw, stride, pad), x, mode="random")


# --- shapes that cannot work: a ValueError or TypeError naming the layer -------------------

@FIXTURES
@given(n=st.integers(1, 4), d=st.integers(1, 6), wrong=st.integers(1, 6),
       ndim=st.integers(1, 4))
def test_impossible_shapes_are_named_never_an_index_error(xp, n, d, wrong, ndim):
    assume(wrong != d)
    cases = [
        (Affine(xp.zeros((d, 2)), xp.zeros(2), name="AffineX"), xp.zeros((n, wrong)), "AffineX"),
        (BatchNormalization(xp.ones(d), xp.zeros(d), name="BNX"), xp.zeros((n, wrong)), "BNX"),
        (Convolution(xp.zeros((2, d, 1, 1)), xp.zeros(2), name="ConvX"),
         xp.zeros((n, wrong, 3, 3)), "ConvX"),
        (Convolution(xp.zeros((2, 1, 1, 1)), xp.zeros(2), name="ConvX"),
         xp.zeros((n,) + (3,) * (ndim - 1)) if ndim != 4 else xp.zeros((n, 1, 1, 1, 1)),
         "ConvX"),
        (Pooling(d + 9, 2, name="PoolX"), xp.zeros((n, 1, d + 8, 4)), "PoolX"),
    ]
    for layer, x, name in cases:
        with pytest.raises((ValueError, TypeError), match=name):
            layer.forward(x)
    with pytest.raises(ValueError, match="SoftmaxWithLoss"):
        SoftmaxWithLoss().forward(xp.zeros((n, d)), xp.zeros(n + 1, dtype=xp.int64))


# --- files: any bytes give DatasetError or CheckpointError, nothing else ---------------------

def valid_idx(labels=False):
    if labels:
        return datasets.LABEL_MAGIC.to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    header = datasets.IMAGE_MAGIC.to_bytes(4, "big") + b"".join(
        v.to_bytes(4, "big") for v in (2, 28, 28))
    return header + bytes(range(256)) * 6 + bytes(32)


@st.composite
def damaged(draw, good):
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "gzipped"]))
    if kind == "random":
        return draw(st.binary(max_size=2000))
    if kind == "truncated":
        return good[:draw(st.integers(0, len(good) - 1))]
    data = bytearray(good if kind == "flipped" else gzip.compress(good, mtime=0))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@FIXTURES
@given(data=st.data(), labels=st.booleans())
def test_idx_parser_raises_only_dataset_errors(tmp_path, data, labels):
    good = valid_idx(labels)
    blob = data.draw(damaged(good))
    path = tmp_path / ("t.idx.gz" if blob[:2] == b"\x1f\x8b" else "t.idx")
    path.write_bytes(blob)
    magic = datasets.LABEL_MAGIC if labels else datasets.IMAGE_MAGIC
    try:
        out = datasets.read_idx(str(path), magic)
    except datasets.DatasetError as e:
        assert str(path) in str(e)
    else:  # a flip that kept the file valid: then the header describes what came back
        assert out.dtype == np.uint8 and out.ndim == (1 if labels else 3)


def checkpoint_bytes():
    backends.use("numpy")
    net = MultiLayerNetExtend(4, [3], 2, use_batchnorm=True, use_dropout=True, seed=0)
    buffer = io.BytesIO()
    meta = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION,
            "model": "MultiLayerNetExtend", "config": net.config(), "dtype": "float32"}
    arrays = {f"param/{k}": v for k, v in net.params.items()}
    arrays.update({f"state/{k}": backends.to_numpy(v) for k, v in net.state().items()})
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    return buffer.getvalue()


GOOD_CHECKPOINT = checkpoint_bytes()


@FIXTURES
@given(data=st.data())
def test_checkpoint_reader_raises_only_checkpoint_errors_and_changes_nothing(tmp_path, data):
    blob = data.draw(damaged(GOOD_CHECKPOINT).filter(lambda b: not b.startswith(b"\x1f\x8b")))
    path = tmp_path / "c.npz"
    path.write_bytes(blob)
    backends.use("numpy")
    net = MultiLayerNetExtend(4, [3], 2, use_batchnorm=True, use_dropout=True, seed=1)
    before = {k: to_host(v).copy() for k, v in list(net.params.items()) + list(net.state().items())}
    try:
        net.load_params(path)
    except checkpoint.CheckpointError:
        after = {k: to_host(v) for k, v in list(net.params.items()) + list(net.state().items())}
        for key, value in before.items():
            np.testing.assert_array_equal(after[key], value, err_msg=key)


# --- checkpoints: save then load is the identity, on every backend pair ---------------------

@FIXTURES
@given(hidden=st.lists(st.integers(1, 5), max_size=3), bn=st.booleans(), dropout=st.booleans(),
       dtype=DTYPES, seed=st.integers(0, 1000),
       pair=st.sampled_from([("numpy", "numpy"), ("numpy", "cupy"), ("cupy", "numpy"),
                             ("cupy", "cupy")]))
def test_checkpoints_round_trip(tmp_path, hidden, bn, dropout, dtype, seed, pair):
    assume(all(name in backends.available() for name in pair))
    kwargs = dict(use_batchnorm=bn, use_dropout=dropout, dtype=dtype)
    backends.use(pair[0])
    net = MultiLayerNetExtend(5, hidden, 3, seed=seed, **kwargs)
    x = backends.to_device(np.random.default_rng(seed).random((4, 5)), dtype)
    net.gradient(x, backends.to_device(np.array([0, 1, 2, 1])))  # move the layer state
    net.save_params(tmp_path / "net.npz")
    backends.use(pair[1])
    other = MultiLayerNetExtend(5, hidden, 3, seed=seed + 1, **kwargs)
    other.load_params(tmp_path / "net.npz")
    for key, value in list(net.params.items()) + list(net.state().items()):
        got = (other.params.get(key) if key in other.params else other.state()[key])
        np.testing.assert_array_equal(to_host(got), to_host(value), err_msg=key)
