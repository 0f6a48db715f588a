"""One function on two backends, its results compared on the host (:func:`check_parity`)."""

import numpy  # host-side comparisons only

import pytest

import backends
from framework.testing.compare import assert_allclose_report, tolerances
from framework.testing.plugin import as_tested, unusable


def _leaves(tree, path="output"):
    """``(path, array or number)`` pairs of a nested tuple/list/dict of results."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, f"{path}[{k!r}]")
    elif isinstance(tree, (tuple, list)):
        for i, v in enumerate(tree):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, tree


def assert_outputs_close(expected, got, rtol=None, atol=None, labels=("numpy", "cupy")):
    """Compare two nested results leaf by leaf on the host (the second half of check_parity).

    Arrays must agree in shape and dtype (a library that promotes where the other does
    not is a difference: training dtypes are explicit), integers and booleans exactly,
    floating values within the tolerances, where NaN against NaN and an infinity against
    the same infinity agree (as in ``numpy.testing.assert_allclose``). Anything else (a
    string, None) must be equal."""
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    want, have = list(_leaves(expected)), list(_leaves(got))
    if [p for p, _ in want] != [p for p, _ in have]:
        raise AssertionError(f"check_parity: the {labels[0]} and {labels[1]} results differ in "
                             f"structure: {[p for p, _ in want]} against {[p for p, _ in have]}")
    for (path, x), (_, y) in zip(want, have):
        a, b = numpy.asarray(backends.to_numpy(x)), numpy.asarray(backends.to_numpy(y))
        if a.dtype.kind not in "biufc" or b.dtype.kind not in "biufc":  # None, a string
            if not _equal(x, y):
                raise AssertionError(f"check_parity: {path} differs between {labels[0]} and "
                                     f"{labels[1]}: {x!r} against {y!r}")
            continue
        if hasattr(x, "dtype") and hasattr(y, "dtype") and a.dtype != b.dtype:
            raise AssertionError(f"check_parity: {path}: dtype {a.dtype} on {labels[0]} against "
                                 f"{b.dtype} on {labels[1]}")
        if a.dtype.kind in "biu" and b.dtype.kind in "biu":
            if not numpy.array_equal(a, b):
                raise AssertionError(f"check_parity: {path} differs between {labels[0]} and "
                                     f"{labels[1]}: {a!r} against {b!r}")
            continue
        if a.shape == b.shape:  # the same NaN or infinity at a place: agreement, not a gap
            same = (a == b) | (numpy.isnan(a) & numpy.isnan(b))
            if same.any():
                a, b = numpy.where(same, 0, a), numpy.where(same, 0, b)
        r, t = tolerances(a.dtype if a.dtype.kind == "f" else "float64", rtol, atol)
        assert_allclose_report(b, a, r, t, f"check_parity: {path} ({a.dtype})",
                               labels=(labels[1], labels[0]))


def _equal(x, y):
    """Whether two leaves that are not numbers are equal (False where == cannot say)."""
    try:
        return type(x) is type(y) and bool(x == y)
    except Exception:
        return False


def check_parity(fn, *host_inputs, rtol=None, atol=None, between=("numpy", "cupy")):
    """Run ``fn`` on NumPy inputs on the first backend of ``between`` and on the same inputs
    on the second (default: NumPy and CuPy; any two names, e.g. ``("numpy", "torch")``, or
    ``(name, device)`` pairs); compare the outputs on the host.

    ``host_inputs`` are NumPy arrays (or anything else, passed unchanged);
    ``fn`` runs with each backend made the default, so code that builds a
    network inside it builds it there. Outputs may be arrays, numbers, or
    nested tuples, lists and dicts of them. Tolerances follow the first
    output's dtype. Where a backend is not usable here its half is skipped
    (``pytest.skip``, with the reason). Returns ``(first_result, second_result)``.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    specs = [(b, None) if isinstance(b, str) else tuple(b) for b in between]
    if len(specs) != 2 or any(len(s) != 2 or s[0] not in backends.NAMES for s in specs):
        raise ValueError(f"check_parity: between must name two backends, each a name or a "
                         f"(name, device) pair, of {', '.join(backends.NAMES)}; got "
                         f"{between!r}")
    results = []
    for name, device in specs:
        usable, why = backends.backend_class(name).usable()
        if not usable:
            pytest.skip(f"check_parity: the {name} half cannot run: {unusable(name, why)}")
        with backends.using(name, device=device) as chosen, as_tested(chosen):
            moved = [chosen.asarray(x) if isinstance(x, numpy.ndarray) else x
                     for x in host_inputs]
            results.append(fn(*moved))
    labels = tuple(name if device is None else f"{name} on {device}" for name, device in specs)
    assert_outputs_close(results[0], results[1], rtol, atol, labels=labels)
    return results[0], results[1]
