"""framework/layers/pooling.py: max pooling against the definition, on every backend."""

import re

import numpy as np

import backends
import pytest

from framework.layers import Pooling
from framework.testing import check_backward
from tests.conftest import to_host

RNG = np.random.default_rng(72)

CASES = [((2, 3, 6, 6), 2, 2, 2, 0), ((2, 2, 7, 5), 3, 2, 2, 1), ((1, 2, 5, 5), 3, 3, 1, 0),
         ((2, 1, 6, 6), 2, 2, 2, 1), ((1, 1, 4, 4), 4, 4, 1, 0),
         # windows that cover the image exactly yet overlap along one axis (2 x 3 at
         # stride 2): not the tiled case, whose pixels each belong to one window
         ((2, 3, 4, 6), 2, 3, 2, 0),
         # a window taller than the image, which fits only with its padding
         ((1, 2, 2, 3), 4, 4, 1, 1)]


def direct_pooling(x, ph, pw, stride, pad):
    n, c, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    out_h, out_w = (h + 2 * pad - ph) // stride + 1, (w + 2 * pad - pw) // stride + 1
    out = np.empty((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[:, :, i, j] = x[:, :, i * stride:i * stride + ph,
                                j * stride:j * stride + pw].max(axis=(2, 3))
    return out


def untied(shape):
    """Distinct values, so no window has two maxima within h of each other."""
    return RNG.permutation(np.arange(np.prod(shape), dtype=float)).reshape(shape) / 7 - 3


@pytest.mark.parametrize("shape, ph, pw, stride, pad", CASES)
def test_forward_is_the_window_max_and_backward_its_gradient(xp, shape, ph, pw, stride, pad):
    layer = Pooling(ph, pw, stride, pad)
    host = untied(shape)
    out = layer.forward(backends.to_device(host))
    np.testing.assert_array_equal(to_host(out), direct_pooling(host, ph, pw, stride, pad))
    check_backward(Pooling(ph, pw, stride, pad), backends.to_device(host))


def test_padding_is_minus_infinity_not_zero(xp):
    x = backends.to_device(np.full((1, 1, 2, 2), -5.0))
    out = Pooling(2, 2, stride=2, pad=1).forward(x)
    np.testing.assert_array_equal(to_host(out), np.full((1, 1, 2, 2), -5.0))  # the book says 0


def test_ties_send_the_gradient_to_the_first_maximum(xp):
    layer = Pooling(2, 2)
    x = backends.to_device([[[[1.0, 3.0], [3.0, 3.0]]]])
    layer.forward(x)
    dx = layer.backward(backends.to_device([[[[10.0]]]]))
    np.testing.assert_array_equal(to_host(dx), [[[[0.0, 10.0], [0.0, 0.0]]]])


def test_overlapping_windows_add_their_gradients(xp):
    layer = Pooling(2, 2, stride=1)
    x = backends.to_device([[[[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]]])
    out = layer.forward(x)
    np.testing.assert_array_equal(to_host(out), np.full((1, 1, 2, 2), 9.0))
    dx = layer.backward(backends.to_device(np.ones((1, 1, 2, 2))))
    assert float(to_host(dx)[0, 0, 1, 1]) == 4.0 and float(to_host(dx).sum()) == 4.0


def test_stack_form_and_dtype(xp):
    layer = Pooling(2, 2)
    s = backends.to_device(RNG.standard_normal((3, 2, 2, 4, 4)), "float32")
    stacked = layer.forward_stack(s)
    assert backends.dtype_name(stacked.dtype) == "float32"
    for k in range(3):
        np.testing.assert_array_equal(to_host(stacked[k, ...]), to_host(layer.forward(s[k, ...])))


def test_bad_shapes_name_the_layer(xp):
    layer = Pooling(3, 3, name="Pool1")
    with pytest.raises(ValueError, match=r"Pool1: a 3x3 window does not fit the padded 2x2 input"):
        layer.forward(backends.to_device(np.zeros((1, 1, 2, 2))))
    # a window as tall as the image but wider: each side is checked
    with pytest.raises(ValueError, match=r"Pool1: a 3x3 window does not fit the padded 3x2 input"):
        layer.forward(backends.to_device(np.zeros((1, 1, 3, 2))))
    with pytest.raises(ValueError, match=r"Pool1: expected images of shape \(N, C, H, W\)"):
        layer.forward(backends.to_device(np.zeros((2, 9))))
    with pytest.raises(ValueError, match=r"Pool1: expected images of shape \(N, C, H, W\), "
                                         r"got shape \(1, 4, 4\)"):  # one image, no batch axis
        layer.forward(backends.to_device(np.zeros((1, 4, 4))))
    with pytest.raises(ValueError, match=r"^Pooling: pad must be at most half the window, got "
                                         r"pad 2 for a 4x2 window"):  # the narrow side counts
        Pooling(4, 2, pad=2)
    with pytest.raises(ValueError, match=r"^Pooling: pool_h must be at least 1, got 0"):
        Pooling(0, 2)
    # int() made 2.5 a 2 and "2" a 2, silently
    with pytest.raises(ValueError, match=r"^P: pool_h must be a whole number, got 2\.5"):
        Pooling(2.5, 2, name="P")
    with pytest.raises(ValueError, match=r"^Pooling: stride must be a whole number, got '2'"):
        Pooling(2, 2, stride="2")
    with pytest.raises(ValueError, match=r"^Pooling: pad must be at least 0, got -1"):
        Pooling(2, 2, pad=-1)
    assert Pooling(np.int64(2), 2, stride=np.int32(1)).stride == 1  # NumPy's integers are


def test_the_default_stride_is_the_books():
    """The book's repository's Pooling(pool_h, pool_w, stride=2, pad=0), as its author
    changed it in 2020 (the printed code of 2016 said stride=1, which ours followed for a
    while: Pooling(2, 2) then pooled every window where the repository's pools a quarter)."""
    from scripts.benchmark import book
    x = np.random.default_rng(7).random((2, 3, 5, 4))
    layer = Pooling(2, 2)
    assert layer.stride == 2 and layer.pad == 0
    np.testing.assert_array_equal(layer.forward(x), book.Pooling(2, 2).forward(x))
    assert layer.forward(x).shape == (2, 3, 2, 2)


def test_a_dout_of_another_shape_is_refused_not_read_past_its_end(xp):
    """A dout of one sample for a batch of 64 (or of 2 x 2 windows for 4 x 4): the CPU's
    compiled kernels (float32, the book's shapes) read it by the forward's sizes, past its
    end, and returned a gradient made of whatever memory lay there; the other paths
    broadcast it. Refused by the layer, naming both shapes; and by the host's operations
    themselves, before any kernel."""
    from backends import ops_for
    rng = np.random.default_rng(21)
    x = backends.to_device(rng.random((64, 16, 8, 8)).astype(np.float32))
    from framework.layers import Convolution
    conv = Convolution(backends.to_device(rng.random((8, 16, 3, 3)).astype(np.float32)),
                       backends.to_device(np.zeros(8, np.float32)), pad=1)
    pool = Pooling(2, 2, stride=2)
    for layer, out_shape in ((pool, (64, 16, 4, 4)), (conv, (64, 8, 8, 8))):
        assert tuple(layer.forward(x).shape) == out_shape
        for shape in ((1,) + out_shape[1:], out_shape[:2] + (2, 2)):
            with pytest.raises(ValueError, match=rf"^{type(layer).__name__}: dout has shape "
                                                 rf"{re.escape(str(shape))}; the forward pass's "
                                                 rf"output had {re.escape(str(out_shape))}"):
                layer.backward(backends.to_device(np.ones(shape, np.float32)))
    if backends.backend_of(x).name != "numpy":
        return  # the host's kernels' own guard, below
    _, arg = ops_for(x).max_pool(x, 2, 2, 2, 0, 4, 4)
    with pytest.raises(ValueError, match=r"max_pool_grad: dout has shape \(1, 16, 4, 4\)"):
        ops_for(x).max_pool_grad(backends.to_device(np.ones((1, 16, 4, 4), np.float32)), arg,
                                 x, 2, 2, 2, 0)
    W, b = conv.W, conv.b
    out, col = ops_for(x).conv(x, W, b, 1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"conv_grad: dout has shape \(1, 8, 8, 8\); the "
                                         r"forward's output had \(64, 8, 8, 8\)"):
        ops_for(x).conv_grad(backends.to_device(np.ones((1, 8, 8, 8), np.float32)), x, W, col,
                             1, 1)
