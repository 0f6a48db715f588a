"""The book's ``common/util.py``, under its names: ``smooth_curve``, ``shuffle_dataset``,
``conv_output_size``, ``im2col`` and ``col2im`` (the last three live in
:mod:`framework.functions`, beside the layers that use them).

Where ours differ from the book's: ``shuffle_dataset`` takes a ``seed`` (the book draws
from NumPy's global generator) and arrays of any backend (the permutation is drawn on the
host and the arrays are gathered where they live); ``smooth_curve`` takes a ``window``
(the book's is 11) and a curve shorter than it comes back as it is.
"""

from backends import backend_of, check_same_backend, get_array_module, host_rng
from backends.arrays import check_arrays
from framework.functions import col2im, conv_output_size, im2col

__all__ = ["smooth_curve", "shuffle_dataset", "conv_output_size", "im2col", "col2im"]


def smooth_curve(values, window=11):
    """A noisy curve (a loss a step) smoothed by a moving average weighted by a Kaiser window
    (beta 2), its ends mirrored so that it keeps its length: the book's ``smooth_curve``,
    for the loss plots of chapter 6. ``values``: a list or a host array; a NumPy array
    back."""
    import numpy  # a host-side plotting helper
    x = numpy.asarray(values, dtype=float)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"smooth_curve: window must be a whole number at least 1, got "
                         f"{window!r}")
    if x.ndim != 1:
        raise ValueError(f"smooth_curve: expected a curve (one value a step), got shape "
                         f"{x.shape}")
    if x.size < window:
        return x
    w = numpy.kaiser(window, 2)
    s = numpy.r_[x[window - 1:0:-1], x, x[-1:-window:-1]]
    y = numpy.convolve(w / w.sum(), s, mode="valid")
    return y[window // 2: window // 2 + x.size]


def shuffle_dataset(x, t, seed=None):
    """``(x, t)`` in one random order, the samples along the first axis (labels or one-hot
    rows beside their images): the book's ``shuffle_dataset``, before a validation split.
    ``seed`` makes the order repeatable (None: a fresh one, as the book's). New arrays, on
    the backend the arrays live on."""
    check_arrays("shuffle_dataset", x=x, t=t)
    check_same_backend("shuffle_dataset", x=x, t=t)
    if x.ndim < 1 or t.ndim < 1 or x.shape[0] != t.shape[0]:
        raise ValueError(f"shuffle_dataset: x has shape {tuple(x.shape)} and t "
                         f"{tuple(t.shape)}; expected as many samples in each, along the "
                         f"first axis")
    n = x.shape[0]
    order = host_rng(seed).permutation(n).astype("int32" if n < 2**31 else "int64")
    order = backend_of(x).asarray(order)  # on the arrays' device
    xp = get_array_module(x, t)
    return xp.take(x, order, axis=0), xp.take(t, order, axis=0)
