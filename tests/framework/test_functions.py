"""framework/functions.py: activations and losses against hand-computed numbers."""

import warnings

import numpy as np

import backends
import pytest

from framework.functions import (col2im, cross_entropy_error, identity_function, im2col,
                                 log_softmax, relu, relu_grad, sigmoid, sigmoid_grad, softmax,
                                 softmax_loss, step_function, sum_squared_error)
from tests.conftest import to_host


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_values_and_no_overflow(xp, dtype):
    x = backends.to_device([-1e4, -2.0, 0.0, 2.0, 1e4], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would fail the test
        y = to_host(sigmoid(x))
    assert backends.dtype_name(y.dtype) == np.dtype(dtype).name
    expected = [0.0, 0.11920292202211755, 0.5, 0.8807970779778823, 1.0]
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-30)


def test_relu(xp):
    y = to_host(relu(backends.to_device([-1.5, 0.0, 2.5])))
    np.testing.assert_array_equal(y, [0.0, 0.0, 2.5])


def test_softmax_book_example_and_stability(xp):
    # The book's example scores from 3.5.1, and the same shifted by 1000.
    a = backends.to_device([0.3, 2.9, 4.0])
    expected = [0.01821127, 0.24519181, 0.73659691]
    np.testing.assert_allclose(to_host(softmax(a)), expected, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = softmax(backends.to_device([[1010.0, 1000.0, 990.0], [0.3, 2.9, 4.0]]))
    np.testing.assert_allclose(to_host(big)[0], [9.99954600e-01, 4.53978686e-05, 2.06106005e-09],
                               rtol=1e-6)
    np.testing.assert_allclose(to_host(big)[1], expected, rtol=1e-6)
    np.testing.assert_allclose(to_host(big).sum(axis=1), [1.0, 1.0])


def test_log_softmax_is_log_of_softmax(xp):
    x = backends.to_device([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    out = to_host(log_softmax(x))
    np.testing.assert_allclose(out[0], np.log(to_host(softmax(x[0, ...]))), rtol=1e-12)
    np.testing.assert_allclose(out[1], [0.0, -1000.0, -2000.0])


def test_cross_entropy_book_example(xp):
    # 4.2.2: label 2, the net says 0.6 for it -> 0.510825457099338; says 0.1 -> 2.302584092994546
    t = backends.to_device([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=xp.float64)
    y_good = backends.to_device([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    y_bad = backends.to_device([0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0])
    assert float(cross_entropy_error(y_good, t)) == pytest.approx(0.510825457099338, rel=1e-12)
    assert float(cross_entropy_error(y_bad, t)) == pytest.approx(2.302584092994546, rel=1e-12)
    # integer label, 1-D and 2-D batch give the same
    assert float(cross_entropy_error(y_good, backends.to_device(2))) == pytest.approx(0.510825457099338)
    batch = xp.stack([y_good, y_bad])
    both = (0.510825457099338 + 2.302584092994546) / 2
    assert float(cross_entropy_error(batch, backends.to_device([2, 2]))) == pytest.approx(both)
    assert float(cross_entropy_error(batch, xp.stack([t, t]))) == pytest.approx(both)
    # one-hot rows of bools (np.eye(10, dtype=bool)[t]): PyTorch and the standard take
    # no argmax of bools, NumPy does
    hot = backends.to_device(np.eye(10, dtype=bool)[[2, 7]])
    assert float(cross_entropy_error(batch, hot)) == pytest.approx(0.510825457099338)


@pytest.mark.parametrize("labels, message", [
    ([0, 0, 1], r"t has shape \(3,\) and dtype int64; expected one-hot labels of y's shape "
                r"\(2, 10\) or 2 integer class indices"),
    ([[1, 0], [0, 1]], r"t has shape \(2, 2\) and dtype int64; expected one-hot labels of y's "
                       r"shape \(2, 10\) or 2 integer class indices"),
    ([1.0, 2.0], r"t has shape \(2,\) and dtype float64; expected one-hot"),
    ([2, 10], r"labels must lie in 0\.\.9 for 10 classes, got values 2\.\.10"),
    ([-1, 2], r"labels must lie in 0\.\.9 for 10 classes, got values -1\.\.2")])
def test_cross_entropy_names_labels_that_do_not_fit(xp, labels, message):
    """Labels of the wrong shape said "cannot reshape array of size 3 into shape (1,)" or
    "`indices` and `arr` must have the same number of dimensions"; a label of -1 was read
    as the last class, silently. A label outside the classes is named where the labels
    can be read without waiting (the host's arrays); elsewhere (a GPU's, JAX's) the loss
    is NaN."""
    y = backends.to_device(np.full((2, 10), 0.1))
    if message.startswith("labels must lie") and backends.is_device_array(y):
        assert np.isnan(float(cross_entropy_error(y, backends.to_device(labels))))
    else:
        with pytest.raises(ValueError, match=r"^cross_entropy_error: " + message):
            cross_entropy_error(y, backends.to_device(labels))
    with pytest.raises(ValueError, match=r"^cross_entropy_error: y has shape \(2, 5, 2\)"):
        cross_entropy_error(xp.reshape(y, (2, 5, 2)), backends.to_device([0, 1]))


def test_cross_entropy_of_no_samples_is_named(xp):
    """A batch of no samples gave NaN and NumPy's "invalid value encountered in scalar
    divide" warning, where SoftmaxWithLoss names it."""
    y = backends.to_device(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"^cross_entropy_error: y has shape \(0, 3\), a "
                                         r"batch of no samples, which has no mean loss"):
        cross_entropy_error(y, backends.to_device(np.zeros(0, dtype=np.int64)))


def test_cross_entropy_on_a_device_gives_nan_for_a_label_outside_the_classes(monkeypatch):
    """Where reading the labels would wait for a GPU, the gather stays inside the rows (no
    out-of-bounds read, no device-side assert) and the loss is NaN; labels inside give
    the host's value."""
    import framework.functions
    monkeypatch.setattr(framework.functions, "is_device_array", lambda a: True)
    y = np.array([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    inside = float(cross_entropy_error(y, np.array([1, 2])))
    assert inside == pytest.approx(-(np.log(0.6 + 1e-7) * 2) / 2, rel=1e-12)
    assert np.isnan(float(cross_entropy_error(y, np.array([1, 3]))))
    assert np.isnan(float(cross_entropy_error(y, np.array([-1, 2]))))


def test_a_list_is_named_where_an_array_belongs():
    """relu of a list ended in "'list' object has no attribute 'nbytes'", cross_entropy_error
    of one in "... 'ndim'", sigmoid of one in "'>=' not supported between instances of 'list'
    and 'int'", im2col and col2im of one in "... no attribute 'shape'"; softmax takes one, as
    NumPy's functions do."""
    with pytest.raises(TypeError, match=r"^relu: x must be an array, got list; convert it "
                                        r"first \(numpy\.asarray, or backends\.to_device\)$"):
        relu([-1.0, 2.0])
    for y, t, name in (([0.1, 0.9], np.array([0, 1]), "y"),
                       (np.array([0.1, 0.9]), [0, 1], "t")):
        with pytest.raises(TypeError, match=rf"^cross_entropy_error: {name} must be an array, "
                                            rf"got list"):
            cross_entropy_error(y, t)
    np.testing.assert_allclose(softmax([0.3, 2.9, 4.0]), softmax(np.array([0.3, 2.9, 4.0])))
    for where, call in (("sigmoid", lambda: sigmoid([-1.0, 0.0, 2.0])),
                        ("im2col", lambda: im2col(np.ones((1, 1, 3, 3)).tolist(), 2, 2)),
                        ("col2im", lambda: col2im(np.ones((4, 4)).tolist(), (1, 1, 3, 3), 2, 2))):
        with pytest.raises(TypeError, match=rf"^{where}: \w+ must be an array, got list"):
            call()
    np.testing.assert_array_equal(relu(np.array([-1.0, 2.0])), [0.0, 2.0])


@pytest.mark.parametrize("value", [-2.0, 3, 0.5])
def test_a_python_number_is_taken_by_every_function_as_the_books_numpy_takes_it(value):
    """``relu(-2.0)``, ``relu_grad(3)`` and ``step_function(0.5)`` were "x must be an array,
    got float" where ``sigmoid(-2.0)`` answered, as the book's NumPy functions all do."""
    from framework.functions import log_softmax, relu_grad, sigmoid_grad, step_function
    s = 1 / (1 + np.exp(-value))
    expected = {relu: max(0.0, value), relu_grad: float(value >= 0), sigmoid: s,
                sigmoid_grad: (1 - s) * s, step_function: int(value > 0), softmax: 1.0,
                log_softmax: 0.0}
    for function, number in expected.items():
        got = function(value)
        assert got.shape == () and float(got) == pytest.approx(number, rel=1e-12), function


def test_the_rest_of_the_books_functions_give_its_numbers(xp):
    """The book's ``common/functions.py`` names all answer (six were missing, so a
    reader's ``from common.functions import sum_squared_error``, as chapter 4's code has
    it, had no counterpart): 4.2.1's two squared errors and the step function of 3.2.2."""
    def on_device(values, dtype="float64"):
        return backends.to_device(values, dtype)
    t = on_device([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    y = on_device([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    y7 = on_device([0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0])
    assert float(to_host(sum_squared_error(y, t))) == pytest.approx(0.0975, abs=1e-15)
    assert float(to_host(sum_squared_error(y7, t))) == pytest.approx(0.5975, abs=1e-15)
    with pytest.raises(ValueError, match=r"sum_squared_error: y has shape \(10,\), t \(2,\)"):
        sum_squared_error(y, on_device([0, 1]))
    x = on_device([-1.0, 0.0, 2.0])
    steps = to_host(step_function(x))
    assert steps.tolist() == [0, 0, 1] and steps.dtype.kind == "i"
    assert to_host(relu_grad(x)).tolist() == [0.0, 1.0, 1.0]  # 1 at 0, as the book's
    s = to_host(sigmoid(x))
    np.testing.assert_allclose(to_host(sigmoid_grad(x)), (1 - s) * s, rtol=1e-15)
    assert identity_function(x) is x
    scores, labels = on_device([[0.3, 2.9, 4.0]]), backends.to_device([2], "int64")
    assert float(to_host(softmax_loss(scores, labels))) == pytest.approx(
        float(to_host(cross_entropy_error(softmax(scores), labels))), rel=1e-15)


def test_jax_without_float64_takes_labels_without_a_warning():
    """Labels went through int64, which JAX without float64 truncates to int32 with a
    UserWarning at every call of cross_entropy_error."""
    jax = pytest.importorskip("jax")
    before = bool(jax.config.jax_enable_x64)  # (jax.enable_x64 is JAX 0.8's and later)
    jax.config.update("jax_enable_x64", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = jax.numpy.asarray([[0.1, 0.9], [0.8, 0.2]])
            loss = cross_entropy_error(y, jax.numpy.asarray([1, 0]))
            assert step_function(y).dtype == jax.numpy.int32
    finally:
        jax.config.update("jax_enable_x64", before)
    assert float(loss) == pytest.approx(-(np.log(0.9 + 1e-7) + np.log(0.8 + 1e-7)) / 2, rel=1e-6)


def test_integer_and_bool_arrays_are_taken_as_the_books_numpy_takes_them(xp):
    """3.5.2 writes ``a = np.array([1010, 1000, 990])``, an integer array, for softmax:
    NumPy answers in float64, where PyTorch said ``"softmax_lastdim_kernel_impl" not
    implemented for 'Long'`` and array-api-strict ``Only floating-point dtypes are allowed
    in exp``. Every library now answers in its default floating type; ``relu`` and
    ``step_function`` keep integers (PyTorch refused them, JAX made relu's float64), and
    bools count as 0 and 1."""
    a = backends.to_device([1010, 1000, 990], "int64")
    default = xp.__array_namespace_info__().default_dtypes()
    for function in (softmax, log_softmax, sigmoid, sigmoid_grad):
        assert backends.dtype_name(function(a).dtype) == backends.dtype_name(
            default["real floating"]), function
    np.testing.assert_allclose(to_host(softmax(a)), [9.99954600e-01, 4.53978686e-05,
                                                     2.06106005e-09], rtol=1e-6)
    np.testing.assert_allclose(to_host(sigmoid(backends.to_device([True, False]))),
                               [0.7310585786300049, 0.5], rtol=1e-6)
    signed = backends.to_device([-2, 0, 3], "int64")
    for function, expected in ((relu, [0, 0, 3]), (step_function, [0, 0, 1]),
                               (relu_grad, [0, 1, 1])):
        got = function(signed)
        assert backends.dtype_kind(got.dtype) == "i", function
        assert to_host(got).tolist() == expected, function
    flags = backends.to_device([True, False])
    assert to_host(relu(flags)).tolist() == [1, 0]
    assert to_host(step_function(flags)).tolist() == [1, 0]
    assert to_host(relu_grad(flags)).tolist() == [1, 1]
