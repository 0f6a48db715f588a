"""framework/testing/compare.py: tolerances by dtype."""

import numpy as np

from framework.testing import tolerances


def test_tolerances_follow_the_dtype_and_can_be_overridden():
    assert tolerances("float64") == (1e-5, 1e-7)
    assert tolerances(np.float32, atol=0.5) == (1e-3, 0.5)
