"""framework/util.py: the book's common/util.py under its names."""

import numpy as np
import pytest

import backends
from framework import functions
from framework.util import col2im, conv_output_size, im2col, shuffle_dataset, smooth_curve
from tests.conftest import to_host


def books_smooth_curve(x):
    """common/util.py's, as the book prints it."""
    window_len = 11
    s = np.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def test_smooth_curve_is_the_books():
    losses = np.random.default_rng(3).random(200) + np.linspace(2, 0, 200)
    np.testing.assert_array_equal(smooth_curve(losses), books_smooth_curve(losses))
    np.testing.assert_array_equal(smooth_curve(list(losses[:30])), books_smooth_curve(losses[:30]))
    assert smooth_curve([1.0, 2.0]).tolist() == [1.0, 2.0]  # shorter than the window
    # exactly the window's length: smoothed as the book smooths it (only shorter is kept)
    np.testing.assert_array_equal(smooth_curve(losses[:11]), books_smooth_curve(losses[:11]))
    assert not np.array_equal(smooth_curve(losses[:11]), losses[:11])
    with pytest.raises(ValueError, match=r"^smooth_curve: window must be a whole number"):
        smooth_curve(losses, window=0)
    with pytest.raises(ValueError, match=r"^smooth_curve: expected a curve"):
        smooth_curve(losses.reshape(20, 10))


def test_the_books_util_names_are_the_frameworks():
    assert (conv_output_size, im2col, col2im) == (functions.conv_output_size, functions.im2col,
                                                  functions.col2im)


def test_shuffle_dataset_keeps_each_label_with_its_sample(backend):
    """One permutation for both, on the arrays' backend; the same seed the same order on
    every backend; images (N, C, H, W) and one-hot rows alike."""
    n = 10
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 2, 2)
    t = np.eye(n, dtype=np.float32)[np.arange(n) % 10]
    xs, ts = shuffle_dataset(backend.asarray(x), backend.asarray(t), seed=4)
    assert backends.backend_of(xs).name == backend.name
    xs, ts = to_host(xs), to_host(ts)
    order = np.argmax(ts, axis=1)
    assert sorted(order.tolist()) == list(range(n)) and order.tolist() != list(range(n))
    np.testing.assert_array_equal(xs, x[order])
    again, _ = shuffle_dataset(backend.asarray(x), backend.asarray(t), seed=4)
    np.testing.assert_array_equal(to_host(again), xs)
    np.testing.assert_array_equal(shuffle_dataset(x, t, seed=4)[0], xs)  # NumPy's order too
    with pytest.raises(ValueError, match=r"^shuffle_dataset: x has shape \(10, 1, 2, 2\) and "
                                         r"t \(9, 10\); expected as many samples"):
        shuffle_dataset(backend.asarray(x), backend.asarray(t[:9]), seed=4)
    with pytest.raises(TypeError, match=r"^shuffle_dataset: t must be an array, got list"):
        shuffle_dataset(backend.asarray(x), list(range(n)))
