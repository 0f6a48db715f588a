"""framework/testing/parity.py: results compared leaf by leaf, across two backends."""

import numpy as np
import pytest

from framework.testing import assert_outputs_close, check_parity
from models import TwoLayerNet

RNG = np.random.default_rng(13)


def test_outputs_are_compared_leaf_by_leaf():
    a = {"loss": np.float32(1.0), "grads": [np.ones(3, np.float32), np.arange(3)]}
    assert_outputs_close(a, {"loss": np.float32(1.0 + 1e-6),
                             "grads": [np.ones(3, np.float32), np.arange(3)]})
    with pytest.raises(AssertionError, match=r"output\['grads'\]\[0\] \(float32\)"):
        assert_outputs_close(a, {"loss": np.float32(1.0),
                                 "grads": [np.ones(3, np.float32) * 1.1, np.arange(3)]})
    with pytest.raises(AssertionError, match=r"output\['grads'\]\[1\] differs"):
        assert_outputs_close(a, {"loss": np.float32(1.0),
                                 "grads": [np.ones(3, np.float32), np.arange(1, 4)]})
    with pytest.raises(AssertionError, match="differ in structure"):
        assert_outputs_close(a, {"loss": np.float32(1.0)})
    with pytest.raises(AssertionError, match=r"differ in structure: .*output\['loss'\].* "
                                             r"against .*output\['lost'\]"):
        assert_outputs_close({"loss": 1.0}, {"lost": 1.0})  # as many leaves, other names
    with pytest.raises(AssertionError, match=r"output\[1\] differs"):  # counts are exact
        assert_outputs_close((1.0, np.arange(3)), (1.0, np.array([0, 1, 3])))


def test_the_same_nan_or_infinity_agrees_and_a_dtype_or_a_word_that_differs_does_not():
    """NaN against NaN (log of a negative on both libraries) failed as "relative error nan",
    as did inf against inf; None against None failed as an object array, two strings in
    "could not convert string to float"; float32 against float64 passed."""
    nan, inf = np.float32("nan"), np.float32("inf")
    assert_outputs_close(np.array([nan, inf, -inf, 1.0], np.float32),
                         np.array([nan, inf, -inf, 1.0], np.float32))
    for other in ([1.0, inf, -inf, 1.0], [nan, -inf, -inf, 1.0], [nan, inf, -inf, 2.0]):
        with pytest.raises(AssertionError, match=r"^check_parity: output \(float32\):"):
            assert_outputs_close(np.array([nan, inf, -inf, 1.0], np.float32),
                                 np.array(other, np.float32))
    assert_outputs_close({"note": None, "name": "relu"}, {"note": None, "name": "relu"})
    with pytest.raises(AssertionError, match=r"^check_parity: output\['name'\] differs between "
                                             r"numpy and torch: 'relu' against 'sigmoid'$"):
        assert_outputs_close({"name": "relu"}, {"name": "sigmoid"}, labels=("numpy", "torch"))
    with pytest.raises(AssertionError, match=r"^check_parity: output\[0\] differs .*: None "
                                             r"against 0\.0$"):
        assert_outputs_close([None], [0.0])
    with pytest.raises(AssertionError, match=r"^check_parity: output: dtype float32 on numpy "
                                             r"against float64 on torch$"):
        assert_outputs_close(np.ones(2, np.float32), np.ones(2), labels=("numpy", "torch"))
    with pytest.raises(AssertionError, match=r"dtype int32 on numpy against int64 on cupy"):
        assert_outputs_close(np.arange(2, dtype=np.int32), np.arange(2, dtype=np.int64))
    assert_outputs_close(np.float32(1.0), 1.0)  # a Python number has no dtype to differ in


def parity_loss(x, t):
    net = TwoLayerNet(6, 5, 3, seed=0, weight_init_std=0.5)
    return net.loss(x, t), net.gradient(x, t)


def test_check_parity_of_a_network():
    x, t = RNG.random((4, 6), dtype=np.float32), np.array([0, 2, 1, 1])
    expected, got = check_parity(parity_loss, x, t)  # skips the GPU half without CuPy
    assert set(got[1]) == {"W1", "b1", "W2", "b2"}


@pytest.mark.parametrize("other", ["array_api_strict", "torch", "cupy"])
def test_check_parity_fails_where_the_backends_differ(other):
    def differs(x):  # one part in a hundred off (float32's tolerance is 1e-3), on `other` only
        return x * (1.0 if type(x) is np.ndarray else 1.01)
    with pytest.raises(AssertionError, match=r"check_parity: output \(float32\)"):
        check_parity(differs, np.ones(3, np.float32), between=("numpy", other))


@pytest.mark.parametrize("between", [("numpy", "nope"), ("numpy",), ("numpy", "torch", "jax"),
                                     "numpy", (("torch",), "numpy")])
def test_between_names_two_backends_or_says_so(between):
    """A misspelt name was a KeyError, one name an IndexError."""
    with pytest.raises(ValueError, match=r"check_parity: between must name two backends, each "
                                         r"a name or a \(name, device\) pair, of numpy, "):
        check_parity(lambda x: x, np.ones(3), between=between)


def test_the_tolerances_given_are_the_ones_used():
    """One part in a hundred off fails float32's default (1e-3) and passes rtol=0.05."""
    def differs(x):
        return x * (1.01 if "device2" in str(x.device) else 1.0)
    between = (("array_api_strict", "device1"), ("array_api_strict", "device2"))
    with pytest.raises(AssertionError, match=r"output \(float32\)"):
        check_parity(differs, np.ones(3, np.float32), between=between)
    check_parity(differs, np.ones(3, np.float32), between=between, rtol=0.05)
    check_parity(differs, np.ones(3, np.float32), between=between, rtol=0, atol=0.02)


def test_a_name_and_device_pair_runs_on_that_device():
    first, second = check_parity(lambda x: x, np.ones(3), between=(
        ("array_api_strict", "device1"), ("array_api_strict", "device2")))
    assert (str(first.device), str(second.device)) == (
        "array_api_strict.Device('device1')", "array_api_strict.Device('device2')")
