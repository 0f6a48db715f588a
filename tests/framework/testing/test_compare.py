"""framework/testing/compare.py: tolerances by dtype."""

import re

import numpy as np
import pytest

from framework.testing import tolerances


def test_tolerances_follow_the_dtype_and_can_be_overridden():
    assert tolerances("float64") == (1e-5, 1e-7)
    assert tolerances(np.float32, atol=0.5) == (1e-3, 0.5)
    # NumPy's scalar types too: numpy.float64 was named "float64'>", an unknown name, and
    # got float32's tolerances, a hundred times looser
    assert tolerances(np.float64) == tolerances(np.dtype("float64")) == (1e-5, 1e-7)
    assert tolerances(np.float16, rtol=0.5) == (0.5, 1e-3)


def test_a_nan_fails_and_is_named_first():
    """A NaN compares false with everything: it must count as a failure (``excess > 0``
    would pass it), and be listed before the finite misses."""
    from framework.testing.compare import worst_elements
    ok, lines = worst_elements(np.array([1.0, np.nan, 3.5]), np.array([1.0, 2.0, 3.0]),
                               1e-5, 1e-7)
    assert not ok and lines[0].startswith("    2 of 3 elements outside")
    assert lines[1].startswith("    at (1,): analytic nan, numerical 2")


def test_the_tolerance_scales_with_the_value():
    """|a - n| <= atol + rtol |n|: large values with a small relative error pass, and the
    same absolute error on small values fails."""
    from framework.testing.compare import worst_elements
    assert worst_elements(np.array([1000.001]), np.array([1000.0]), 1e-5, 1e-7)[0]
    assert not worst_elements(np.array([0.001 + 0.001]), np.array([0.001]), 1e-5, 1e-7)[0]


def test_arrays_of_two_shapes_are_named_not_broadcast():
    """(3, 1) against (3,) would broadcast to a (3, 3) comparison that can pass."""
    import pytest
    from framework.testing.compare import assert_allclose_report
    with pytest.raises(AssertionError, match=r"^dW: shape \(3, 1\) against \(3,\)$"):
        assert_allclose_report(np.ones((3, 1)), np.ones(3), 1e-5, 1e-7, "dW")


@pytest.mark.parametrize("given", [{"rtol": -1}, {"atol": -1e-9}, {"rtol": "1e-5"},
                                   {"atol": float("nan")}, {"rtol": True}])
def test_a_tolerance_that_is_no_tolerance_is_named(given):
    """A negative rtol failed every element, as if the gradient were wrong; a string ended
    in NumPy's "ufunc 'multiply' did not contain a loop"."""
    (what, value), = given.items()
    with pytest.raises(ValueError, match=rf"^{what} must be a finite number, 0 or more \(or "
                                         rf"None: the dtype's\), got {re.escape(repr(value))}$"):
        tolerances("float64", **given)
    assert tolerances("float64", rtol=0, atol=0) == (0, 0)
