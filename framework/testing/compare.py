"""Comparing arrays on the host: the tolerances by dtype, and failures that name the worst
elements."""

import math
import numbers

import numpy  # host-side comparisons only

import backends

#: (rtol, atol) per dtype: an element passes when |a - b| <= atol + rtol * |b|
TOLERANCES = {
    "float64": (1e-5, 1e-7),
    "float32": (1e-3, 1e-5),
    "float16": (1e-2, 1e-3),
}


def tolerances(dtype, rtol=None, atol=None):
    """``(rtol, atol)`` for ``dtype`` from :data:`TOLERANCES`, each overridden where given:
    a finite number, 0 or more (``ValueError`` naming it: a negative one failed every
    element, a string ended in NumPy's 'no loop matching the specified signature')."""
    for what, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value) or value < 0):
            raise ValueError(f"{what} must be a finite number, 0 or more (or None: the "
                             f"dtype's), got {value!r}")
    name = dtype if isinstance(dtype, str) else backends.dtype_name(dtype)
    default_rtol, default_atol = TOLERANCES.get(name, TOLERANCES["float32"])
    return (default_rtol if rtol is None else rtol), (default_atol if atol is None else atol)


def worst_elements(analytic, numeric, rtol, atol, count=5):
    """Lines for the ``count`` worst elements of two host arrays, and whether all pass."""
    a = numpy.asarray(analytic, dtype=numpy.float64).reshape(numpy.shape(analytic))
    b = numpy.asarray(numeric, dtype=numpy.float64).reshape(numpy.shape(numeric))
    with numpy.errstate(invalid="ignore"):  # NaN and infinities are reported, not warned of
        excess = numpy.abs(a - b) - (atol + rtol * numpy.abs(b))
    bad = ~(excess <= 0)  # NaN counts as bad
    if not bad.any():
        return True, []
    order = numpy.argsort(numpy.where(numpy.isnan(excess), numpy.inf, excess), axis=None)[::-1]
    lines = []
    for flat in order[:count]:
        index = numpy.unravel_index(flat, a.shape) if a.ndim else ()
        va, vb = a[index], b[index]
        with numpy.errstate(invalid="ignore"):
            rel = abs(va - vb) / max(abs(va), abs(vb), 1e-300)
        lines.append(f"    at {tuple(int(i) for i in index)}: analytic {va:.9g}, "
                     f"numerical {vb:.9g}, relative error {rel:.3g}")
    lines.insert(0, f"    {int(bad.sum())} of {a.size} elements outside "
                    f"|a - n| <= {atol:g} + {rtol:g} |n|; the worst:")
    return False, lines


def assert_allclose_report(actual, expected, rtol, atol, what, labels=("analytic", "numerical")):
    """Compare two arrays (either backend) on the host; ``AssertionError`` with the worst elements."""
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    a, b = backends.to_numpy(actual), backends.to_numpy(expected)
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shape {a.shape} against {b.shape}")
    ok, lines = worst_elements(a, b, rtol, atol)
    if not ok:
        text = "\n".join(lines).replace("analytic", labels[0]).replace("numerical", labels[1])
        raise AssertionError(f"{what}:\n{text}")
