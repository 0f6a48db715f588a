"""framework/layers/convolution.py and im2col/col2im: against direct sums, on every backend."""

import numpy as np

import backends
import pytest

from framework.functions import col2im, im2col
from framework.layers import Convolution
from framework.testing import check_backward
from tests.conftest import to_host

RNG = np.random.default_rng(71)

# (N, C, H, W), (FN, FH, FW), stride, pad: square and not, strides 1-2, padding 0-2
CASES = [((2, 3, 7, 7), (4, 3, 3), 1, 0), ((2, 2, 6, 7), (3, 2, 3), 2, 1),
         ((1, 3, 5, 6), (2, 3, 2), 1, 2), ((3, 1, 8, 8), (2, 5, 5), 2, 2),
         ((2, 2, 4, 4), (3, 2, 2), 2, 0)]


def direct_convolution(x, W, b, stride, pad):
    """The definition: a sum over each window, by loops."""
    n, c, h, w = x.shape
    fn, _, fh, fw = W.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_h, out_w = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    out = np.zeros((n, fn, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * stride:i * stride + fh, j * stride:j * stride + fw]
            out[:, :, i, j] = np.tensordot(window, W, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def books_im2col(x, fh, fw, stride, pad):
    """The book's common/util.py im2col, for the layout."""
    n, c, h, w = x.shape
    out_h, out_w = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((n, c, fh, fw, out_h, out_w))
    for y in range(fh):
        for xx in range(fw):
            col[:, :, y, xx, :, :] = img[:, :, y:y + stride * out_h:stride,
                                         xx:xx + stride * out_w:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1)


def conv_layer(xp, shape, filters, stride, pad, dtype="float64"):
    fn, fh, fw = filters
    W = backends.to_device(RNG.standard_normal((fn, shape[1], fh, fw)), dtype)
    b = backends.to_device(RNG.standard_normal(fn), dtype)
    return Convolution(W, b, stride=stride, pad=pad)


@pytest.mark.parametrize("shape, filters, stride, pad", CASES)
def test_im2col_is_the_books_layout_and_col2im_its_adjoint(xp, shape, filters, stride, pad):
    _, fh, fw = filters
    host = RNG.standard_normal(shape)
    col = im2col(backends.to_device(host), fh, fw, stride, pad)
    np.testing.assert_array_equal(to_host(col), books_im2col(host, fh, fw, stride, pad))
    c = RNG.standard_normal(col.shape)
    back = col2im(backends.to_device(c), shape, fh, fw, stride, pad)
    assert back.shape == shape
    # <im2col(x), c> == <x, col2im(c)>
    assert float((to_host(col) * c).sum()) == pytest.approx(float((host * to_host(back)).sum()),
                                                            rel=1e-12)
    f32 = im2col(backends.to_device(host, "float32"), fh, fw, stride, pad)
    assert backends.dtype_name(f32.dtype) == "float32" and backends.dtype_name(col2im(f32, shape, fh, fw, stride, pad).dtype) == "float32"


@pytest.mark.parametrize("call, message", [
    (lambda x, c: im2col(x[0, ...], 3, 3), r"im2col: expected images of shape \(N, C, H, W\), "
                                          r"got shape \(2, 5, 5\)"),  # was "not enough values"
    (lambda x, c: im2col(x, 7, 3), r"im2col: a 7x3 filter does not fit the padded 5x5 image"),
    (lambda x, c: im2col(x, 3, 7), r"im2col: a 3x7 filter does not fit the padded 5x5 image"),
    (lambda x, c: im2col(x, 3, 3, 0), r"im2col: stride must be at least 1, got 0"),  # was / 0
    (lambda x, c: im2col(x, 3.0, 3), r"im2col: filter_h must be a whole number, got 3\.0"),
    (lambda x, c: im2col(x, 3, 3, 1, -1), r"im2col: pad must be at least 0, got -1"),
    (lambda x, c: col2im(c[:-1, ...], (1, 2, 5, 5), 3, 3), r"col2im: col has shape \(8, 18\); "
     r"images of shape \(1, 2, 5, 5\) with 3x3 windows, stride 1 and pad 0 have \(9, 18\)"),
    (lambda x, c: col2im(c, (2, 5, 5), 3, 3), r"col2im: expected images of shape \(N, C, H, W\)")])
def test_im2col_and_col2im_name_what_does_not_fit(xp, call, message):
    x = backends.to_device(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="^" + message):
        call(x, im2col(x, 3, 3))


@pytest.mark.parametrize("shape, filters, stride, pad", CASES)
def test_forward_is_the_direct_sum_and_backward_its_gradient(xp, shape, filters, stride, pad):
    layer = conv_layer(xp, shape, filters, stride, pad)
    host = RNG.standard_normal(shape)
    out = layer.forward(backends.to_device(host))
    expected = direct_convolution(host, to_host(layer.W), to_host(layer.b), stride, pad)
    np.testing.assert_allclose(to_host(out), expected, rtol=1e-12, atol=1e-12)
    assert out.shape == expected.shape
    report = check_backward(layer, backends.to_device(host), params=("W", "b"))
    assert set(report) == {"input 0", "W", "b"}


def test_first_layer_skips_its_input_gradient(xp):
    layer = conv_layer(xp, (2, 1, 6, 6), (3, 3, 3), 1, 0)
    layer.input_grad = False
    out = layer.forward(backends.to_device(RNG.standard_normal((2, 1, 6, 6))))
    assert layer.backward(backends.to_device(np.ones(out.shape))) is None and layer.dW.shape == (3, 1, 3, 3)


def test_inference_keeps_no_columns_and_backward_says_so(xp):
    layer = conv_layer(xp, (2, 3, 6, 6), (4, 3, 3), 1, 1)
    x = backends.to_device(RNG.standard_normal((2, 3, 6, 6)))
    with pytest.raises(ValueError, match=r"Convolution: backward needs a forward pass in "
                                         r"training mode first .* the last was none"):
        layer.backward(backends.to_device(np.ones((2, 4, 6, 6))))
    trained = layer.forward(x)  # the book's call: training mode, columns kept
    assert layer.col is not None and layer.x is x
    inferred = layer.forward(x, train_flg=False)
    np.testing.assert_array_equal(to_host(inferred), to_host(trained))
    assert layer.col is None and layer.x is None  # the training pass's columns let go too
    with pytest.raises(ValueError, match="the last was inference, which keeps no columns"):
        layer.backward(backends.to_device(np.ones(inferred.shape)))


def test_evaluation_holds_one_layers_columns_at_a_time():
    """DeepConvNet's accuracy on 200 images: the peak of host memory traced during it
    stays under its six layers' columns together (what every layer kept before)."""
    import tracemalloc
    from models import DeepConvNet
    backends.use("numpy")  # host memory is what it traces, whatever XPNET_BACKEND says
    net = DeepConvNet(seed=0)
    x = RNG.random((200, 1, 28, 28)).astype(np.float32)
    t = np.zeros(200, dtype=np.int64)
    columns = 0
    shape = x.shape[1:]
    for layer in net.layers.values():
        if isinstance(layer, Convolution):
            fn, c, fh, fw = layer.W.shape
            out = layer.output_shape(shape)
            columns += c * fh * fw * 200 * out[1] * out[2] * 4
        shape = layer.forward_stack(np.zeros((1, 1) + tuple(shape), np.float32)).shape[2:]
    tracemalloc.start()
    try:
        net.accuracy(x, t)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert columns > 190e6 and peak < 0.8 * columns  # 0.59 measured; 1.4 when all were kept


def test_float32_stays_float32(xp):
    layer = conv_layer(xp, (2, 3, 6, 6), (4, 3, 3), 1, 1, dtype="float32")
    x = backends.to_device(RNG.standard_normal((2, 3, 6, 6)), "float32")
    out = layer.forward(x)
    dx = layer.backward(backends.to_device(np.ones(out.shape), "float32"))
    assert {backends.dtype_name(a.dtype) for a in (out, dx, layer.dW, layer.db)} == {"float32"}


def test_stack_forms_match_the_forward_pass(xp):
    layer = conv_layer(xp, (2, 2, 5, 5), (3, 3, 2), 2, 1)
    s = backends.to_device(RNG.standard_normal((3, 2, 2, 5, 5)))
    stacked = layer.forward_stack(s)
    for k in range(3):
        np.testing.assert_allclose(to_host(stacked[k, ...]), to_host(layer.forward(s[k, ...])), rtol=1e-13)
    x = s[0, ...]
    for param, index in (("W", [0, 35, 17]), ("b", [2, 0])):
        got = layer.perturbed_outputs(x, param, backends.to_device(index), 0.25)
        for k, flat in enumerate(index):
            W, b = to_host(layer.W).copy(), to_host(layer.b).copy()
            (W if param == "W" else b).reshape(-1)[flat] += 0.25
            moved = Convolution(backends.to_device(W), backends.to_device(b), 2, 1)
            np.testing.assert_allclose(to_host(got[k, ...]), to_host(moved.forward(x)),
                                       rtol=1e-12, atol=1e-12)


def test_bad_shapes_name_the_layer(xp):
    layer = Convolution(backends.to_device(np.zeros((4, 3, 5, 5))), backends.to_device(np.zeros(4)), name="Conv1")
    with pytest.raises(ValueError, match=r"Conv1: input has 1 channels, W expects 3"):
        layer.forward(backends.to_device(np.zeros((2, 1, 28, 28))))
    with pytest.raises(ValueError, match=r"Conv1: a 5x5 filter does not fit the padded 4x4 input"):
        layer.forward(backends.to_device(np.zeros((2, 3, 4, 4))))
    with pytest.raises(ValueError, match=r"Conv1: a 5x5 filter does not fit the padded 9x4 "
                                         r"input \(input \(N, 3, 9, 4\), pad 0\)"):
        layer.forward(backends.to_device(np.zeros((2, 3, 9, 4))))  # tall enough, too narrow
    with pytest.raises(ValueError, match=r"Conv1: a 5x5 filter does not fit the padded 4x9 "):
        layer.forward(backends.to_device(np.zeros((2, 3, 4, 9))))  # one row short, wide enough
    # the filter exactly as large as the input: one output pixel, no error
    assert layer.forward(backends.to_device(np.zeros((2, 3, 5, 5)))).shape == (2, 4, 1, 1)
    with pytest.raises(ValueError, match=r"Conv1: expected images of shape \(N, C, H, W\), got "
                                         r"shape \(2, 784\)"):
        layer.forward(backends.to_device(np.zeros((2, 784))))
    with pytest.raises(ValueError, match=r"Conv1: input has 5 channels, W expects 3"):
        layer.forward(backends.to_device(np.zeros((2, 5, 28, 28))))  # more than W's, too
    with pytest.raises(ValueError, match=r"W must be 4-D \(FN, C, FH, FW\)"):
        Convolution(backends.to_device(np.zeros((4, 3, 5))), backends.to_device(np.zeros(4)))
    with pytest.raises(ValueError, match=r"b of shape \(FN,\); got W \(4, 3, 5, 5\) and b "
                                         r"\(3,\)"):  # one bias short
        Convolution(backends.to_device(np.zeros((4, 3, 5, 5))), backends.to_device(np.zeros(3)))
    with pytest.raises(ValueError, match="stride must be at least 1"):
        Convolution(backends.to_device(np.zeros((4, 3, 5, 5))), backends.to_device(np.zeros(4)), stride=0)
    with pytest.raises(ValueError, match=r"^Convolution: stride must be a whole number, got "
                                         r"1\.5"):  # int() made it 1, silently
        Convolution(backends.to_device(np.zeros((4, 3, 5, 5))), backends.to_device(np.zeros(4)),
                    stride=1.5)
    with pytest.raises(ValueError, match=r"^Convolution: pad must be a whole number, got True"):
        Convolution(backends.to_device(np.zeros((4, 3, 5, 5))), backends.to_device(np.zeros(4)),
                    pad=True)
