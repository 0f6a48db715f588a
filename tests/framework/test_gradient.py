"""framework/gradient.py: the central-difference gradient and the gradient check."""

import re

import numpy as np

import backends
import pytest

from framework.gradient import (gradient_check, numerical_gradient, numerical_gradient_2d,
                                numerical_gradient_stacked)
from models import TwoLayerNet
from tests.conftest import to_host

READS_ITS_ARGUMENT = lambda a: None  # noqa: E731  f reads the array it is given: nothing to put


def test_numerical_gradient_of_sum_of_squares(xp):
    # the book's function_2 of 4.4: f(x) = x0^2 + x1^2, gradient (6, 8) at (3, 4)
    x = backends.to_device([3.0, 4.0])
    grad = numerical_gradient(lambda v: xp.sum(v ** 2), x, put=READS_ITS_ARGUMENT)
    np.testing.assert_allclose(to_host(grad), [6.0, 8.0], rtol=1e-9)


def test_numerical_gradient_restores_x_exactly(xp):
    rng = np.random.default_rng(3)
    host = rng.standard_normal((3, 4))
    x = backends.to_device(host.copy())  # NumPy's to_device keeps the very array
    numerical_gradient(lambda v: xp.sum(v ** 3), x, put=READS_ITS_ARGUMENT)
    np.testing.assert_array_equal(to_host(x), host)  # bit for bit


@pytest.mark.parametrize("stop", [KeyboardInterrupt, ValueError])
def test_an_f_that_raises_leaves_x_as_it_was(xp, stop):
    """Ctrl-C during a long element loop, or an ``f`` that fails at one element: the array
    (a network's weights, in the book's usage) is back as it was, not left moved by h."""
    host = np.random.default_rng(4).standard_normal((2, 3))
    x = backends.to_device(host.copy())  # NumPy's to_device keeps the very array
    calls = []

    def f(v):
        calls.append(1)
        if len(calls) == 4:  # the second element's second evaluation: x there is moved
            raise stop("stopped")
        return xp.sum(v ** 2)
    with pytest.raises(stop):
        numerical_gradient(f, x, put=READS_ITS_ARGUMENT)
    np.testing.assert_array_equal(to_host(x), host)


def test_numerical_gradient_of_a_matrix_function(xp):
    A = backends.to_device([[1.0, 2.0], [3.0, 4.0]])
    W = backends.to_device([[0.5, -1.0], [2.0, 0.25]])
    holder = [W]  # where f finds W: put puts each moved copy there (JAX's arrays are immutable)
    grad = numerical_gradient(lambda _: xp.sum(A @ holder[0]), W,
                              put=lambda a: holder.__setitem__(0, a))  # d/dW sum(AW) = A^T 1
    np.testing.assert_allclose(to_host(grad), [[4.0, 4.0], [6.0, 6.0]], rtol=1e-9)


def test_numerical_gradient_refuses_integer_arrays(xp):
    with pytest.raises(TypeError, match="floating-point array, got dtype int"):
        numerical_gradient(lambda v: (v ** 2).sum(), backends.to_device([1, 2]))


def test_numerical_gradient_names_a_list_and_an_f_that_is_no_loss(xp):
    """A list said "'list' object has no attribute 'dtype'"; an f returning a vector said
    "setting an array element with a sequence" (NumPy) or failed in a stack (JAX's put)."""
    with pytest.raises(TypeError, match=r"^numerical_gradient: x must be an array \(it is "
                                        r"perturbed in place, where f reads it\), got list"):
        numerical_gradient(lambda v: 0.0, [1.0, 2.0])
    x = backends.to_device([1.0, 2.0])
    holder = [x]
    for f in (lambda v: holder[0] * 2, lambda v: xp.reshape(xp.sum(holder[0]), (1,))):
        with pytest.raises(TypeError, match=r"^numerical_gradient: f must return one number "
                                            r"\(the loss\), got \w+ of shape \((2|1),\)"):
            numerical_gradient(f, x, put=lambda a: holder.__setitem__(0, a))
    with pytest.raises(TypeError, match=r"f must return one number \(the loss\), got str$"):
        numerical_gradient(lambda v: "loss", x, put=lambda a: holder.__setitem__(0, a))
    assert to_host(numerical_gradient(lambda v: 3, x, put=lambda a: holder.__setitem__(0, a))
                   ).tolist() == [0.0, 0.0]  # a constant, a Python number


def test_numerical_gradient_takes_numpys_scalars_as_losses():
    """NumPy's sum of a float32 array is a ``numpy.float32``, which is no Python float: it
    is one number all the same."""
    from framework.gradient import LowPrecisionWarning
    x = np.array([1.0, 2.0], dtype=np.float32)
    with pytest.warns(LowPrecisionWarning):  # (float32 is said to round; here it is exact)
        grad = numerical_gradient(lambda v: np.sum(3 * v[:1]), x, h=1e-2)
    np.testing.assert_allclose(grad, [3.0, 0.0], rtol=1e-4)


def test_gradient_check_reports_per_parameter_figures(xp):
    net = TwoLayerNet(12, 6, 4, dtype="float64", seed=1, weight_init_std=0.5)
    rng = np.random.default_rng(2)
    x = backends.to_device(rng.random((5, 12)))
    t = backends.to_device([0, 1, 2, 3, 1])
    result = gradient_check(net, x, t)
    assert list(result) == ["W1", "b1", "W2", "b2"]
    for mean_abs, max_rel in result.values():
        assert isinstance(mean_abs, float) and isinstance(max_rel, float)
        assert mean_abs < 1e-9
        assert max_rel < 1e-6


def test_gradient_check_floors_the_relative_error_of_gradients_near_zero(xp):
    """An input feature a billion times smaller than the rest gives W1 a row of gradients
    near 1e-11, where central differences carry about 1e-12 of rounding: relative to
    themselves they would read 1e-5 apart. Measured against the floor (a thousandth of
    the parameter's largest gradient) the check reads rounding's size, as for the rest."""
    net = TwoLayerNet(12, 6, 4, dtype="float64", seed=1, weight_init_std=0.5)
    x = np.random.default_rng(2).random((5, 12))
    x[:, 3] *= 1e-9
    result = gradient_check(net, backends.to_device(x), backends.to_device([0, 1, 2, 3, 1]))
    assert max(rel for _, rel in result.values()) < 1e-6, result


def test_gradient_check_catches_a_wrong_backward(xp):
    net = TwoLayerNet(12, 6, 4, dtype="float64", seed=1, weight_init_std=0.5)
    rng = np.random.default_rng(2)
    x, t = backends.to_device(rng.random((5, 12))), backends.to_device([0, 1, 2, 3, 1])
    real = net.gradient

    def wrong(x, t):  # a backprop that forgets the 1/N of the mean loss
        grads = real(x, t)
        return {k: g * x.shape[0] for k, g in grads.items()}
    net.gradient = wrong
    result = gradient_check(net, x, t)
    assert all(max_rel > 0.5 for _, max_rel in result.values())


def test_gradient_check_of_a_float32_network_against_the_float64_reference(xp):
    """``backprop=``: the float32 network's gradients at its own weights, against float64
    central differences at the same (widened) weights: float32's rounding, not 1e-3."""
    reference = TwoLayerNet(12, 6, 4, dtype="float64", seed=1, weight_init_std=0.5)
    trained = TwoLayerNet(12, 6, 4, dtype="float32", seed=1, weight_init_std=0.5)
    for key, p in reference.params.items():
        reference.params[key] = xp.astype(trained.params[key], p.dtype)
    rng = np.random.default_rng(2)
    x = backends.to_device(rng.random((5, 12)).astype(np.float32).astype(np.float64))
    t = backends.to_device([0, 1, 2, 3, 1])
    result = gradient_check(reference, x, t, backprop=trained)
    assert list(result) == ["W1", "b1", "W2", "b2"]
    assert max(mean_abs for mean_abs, _ in result.values()) < 1e-6
    assert max(rel for _, rel in result.values()) < 1e-3
    # other weights in the float32 network: the check sees it
    other = TwoLayerNet(12, 6, 4, dtype="float32", seed=2, weight_init_std=0.5)
    result = gradient_check(reference, x, t, backprop=other)
    assert max(rel for _, rel in result.values()) > 0.1


@pytest.mark.parametrize("h", [0, 0.0, -1e-4, float("nan"), float("inf"), "1e-4", True, None])
def test_a_step_that_is_no_step_is_refused_by_name(xp, h):
    """h = 0 divided 0 by 0: every numerical gradient NaN, and a gradient check that failed
    blaming the backprop; a negative h flipped nothing but was a typo all the same."""
    x = backends.to_device(np.array([3.0, 4.0]))
    net = TwoLayerNet(4, 3, 2, dtype="float64", seed=0)
    xs, t = backends.to_device(np.ones((2, 4))), backends.to_device(np.array([0, 1]))
    for owner, call in (
            ("numerical_gradient", lambda: numerical_gradient(
                lambda v: xp.sum(v ** 2), x, h=h, put=READS_ITS_ARGUMENT)),
            ("numerical_gradient_stacked", lambda: numerical_gradient_stacked(
                lambda index, delta: xp.zeros(index.shape[0]), x, h=h)),
            ("TwoLayerNet.numerical_gradient", lambda: net.numerical_gradient(xs, t, h=h)),
            ("TwoLayerNet.numerical_gradient_elementwise",
             lambda: net.numerical_gradient_elementwise(xs, t, h=h))):
        with pytest.raises(ValueError, match=rf"^{owner}: h must be a finite number above 0 "
                                             rf"\(the step of the central differences\), "
                                             rf"got {re.escape(repr(h))}$"):
            call()
    np.testing.assert_allclose(to_host(numerical_gradient(
        lambda v: xp.sum(v ** 2), x, h=1e-3, put=READS_ITS_ARGUMENT)), [6.0, 8.0], rtol=1e-9)


def test_numerical_gradient_2d_gives_each_rows_gradient_as_the_books(xp):
    """The book's ``common/gradient.py`` name (4.4's gradient field of function_2): a row's
    gradient, ``f`` taking the row; one point alike. It was missing."""
    def function_2(x):
        return xp.sum(x ** 2) if x.ndim == 1 else xp.sum(x ** 2, axis=1)
    X = backends.to_device([[3.0, 4.0], [0.0, 2.0], [-1.0, 0.5]], "float64")
    before = to_host(X).copy()
    np.testing.assert_allclose(to_host(numerical_gradient_2d(function_2, X)),
                               [[6.0, 8.0], [0.0, 4.0], [-2.0, 1.0]], atol=1e-7)
    np.testing.assert_allclose(to_host(numerical_gradient_2d(function_2, X[0, ...])),
                               [6.0, 8.0], atol=1e-7)
    np.testing.assert_array_equal(to_host(X), before)
    none = numerical_gradient_2d(function_2, X[:0, ...])  # no points: no gradients
    assert tuple(none.shape) == (0, 2)
    with pytest.raises(ValueError, match=r"numerical_gradient_2d: X has shape \(1, 3, 2\)"):
        numerical_gradient_2d(function_2, xp.reshape(X, (1, 3, 2)))


def test_a_float32_x_is_told_that_its_differences_are_rounded(xp):
    """4.4's ``numerical_gradient(function_2, torch.tensor([3.0, 4.0]))`` (PyTorch's
    default float32) gave (5.9891, 8.0013) where the book prints (6, 8), without a word:
    a ``LowPrecisionWarning`` now says why and what to give instead; float64 stays quiet."""
    import warnings
    from framework.gradient import LowPrecisionWarning

    def function_2(v):
        return xp.sum(v ** 2) if v.ndim == 1 else xp.sum(v ** 2, axis=1)
    x32 = backends.to_device([3.0, 4.0], "float32")
    with pytest.warns(LowPrecisionWarning, match=r"^numerical_gradient in float32: .*give x "
                                                 r"as float64") as said:
        grad = numerical_gradient(function_2, x32, put=READS_ITS_ARGUMENT)
    assert len(said) == 1
    np.testing.assert_allclose(to_host(grad), [6.0, 8.0], rtol=1e-2)
    with pytest.warns(LowPrecisionWarning, match=r"^numerical_gradient_2d in float32: .*give "
                                                 r"X as float64") as said:
        numerical_gradient_2d(function_2, backends.to_device([[3.0, 4.0], [1.0, 2.0]],
                                                             "float32"))
    assert len(said) == 1  # once for the call, not once per row
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        numerical_gradient(function_2, backends.to_device([3.0, 4.0], "float64"),
                           put=READS_ITS_ARGUMENT)
        numerical_gradient_2d(function_2, backends.to_device([[3.0, 4.0]], "float64"))


def test_float16_is_told_as_float32_is():
    """float16's rounding is coarser still (a loss near 1 moves in steps of 1e-3): warned."""
    from framework.gradient import LowPrecisionWarning
    with pytest.warns(LowPrecisionWarning, match=r"^numerical_gradient in float16: "):
        numerical_gradient(lambda v: (v * v).sum(), np.array([3.0, 4.0], dtype=np.float16))


def test_the_immutable_arrays_loop_puts_x_back_after_its_last_move():
    """For arrays that cannot be written (JAX's) each moved copy is put where f reads x,
    and x itself after the last: else the network would keep a moved parameter. Run here
    on NumPy's arrays through the same loop, which never writes x."""
    from framework.gradient import _numerical_gradient_put
    x = np.array([3.0, 4.0])
    where = {}

    def put(a):
        where["x"] = a
    grad = _numerical_gradient_put(lambda v: (v * v).sum(), x, 1e-4, put)
    np.testing.assert_allclose(grad, [6.0, 8.0], rtol=1e-9)
    assert where["x"] is x
    np.testing.assert_array_equal(x, [3.0, 4.0])
