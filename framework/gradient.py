"""Numerical gradients (the book's ``common/gradient.py``: ``numerical_gradient``,
``numerical_gradient_2d``), and the gradient check of 5.7.3 (numerical vs backprop)."""

import itertools
import math
import numbers
import warnings

import array_api_extra as xpx

from backends import (backend_of, copy, dtype_kind, dtype_name, get_array_module, is_array,
                      on_device_of, size)


class LowPrecisionWarning(UserWarning):
    """Work asked of a float type too narrow for it: central differences in float32 or
    float16, or a Trainer whose optimizer divides by squared gradients in float16
    (:func:`framework.optimizers.float16_trouble`)."""


def warn_low_precision(owner, dtype, remedy="build the network with dtype='float64' to "
                       "check gradients, as the book's float64 arrays do"):
    """A :class:`LowPrecisionWarning` where ``dtype`` is narrower than float64: the book's
    arrays are float64, and its 5.7.3 prints differences of 1e-10 to 1e-13 where float32's
    rounding of the loss alone puts about 1e-3 into each element."""
    name = dtype_name(dtype)
    if name in ("float32", "float16", "bfloat16"):
        warnings.warn(f"{owner} in {name}: the rounding of f's value, divided by 2h, goes "
                      f"into each central difference (about 1e-3 for a loss near 1 and "
                      f"h = 1e-4), far more than backprop's error; {remedy}",
                      LowPrecisionWarning, stacklevel=3)


def check_step(owner, name, h):
    """``h`` as given, or ``ValueError`` naming ``owner``'s argument ``name``: a central
    difference needs a finite step above 0 (0 divides 0 by 0: NaN everywhere, and a
    failed check that blames the gradient)."""
    if isinstance(h, bool) or not isinstance(h, numbers.Real) or not math.isfinite(h) \
            or h <= 0:
        raise ValueError(f"{owner}: {name} must be a finite number above 0 (the step of the "
                         f"central differences), got {h!r}")
    return h


def numerical_gradient(f, x, h=1e-4, put=None):
    """df/dx by central differences, (f(x + h e_i) - f(x - h e_i)) / 2h, for every element.

    ``f`` takes no notice of its argument in the book's usage (it closes over
    the network); ``x`` is perturbed in place and restored exactly after each
    element, and after an ``f`` that raises (or a Ctrl-C) too. Works on CuPy arrays: indices come from Python, not from
    ``np.nditer``, and no value is copied to the host. Integer arrays raise
    ``TypeError``: ``x + h`` would be truncated back to the same integer.

    Arrays that cannot be written (JAX's) need ``put(array)``, which puts an array where
    ``f`` finds ``x`` (a network's ``params.__setitem__``): each moved copy is put there,
    and ``x`` back after; without it, ``TypeError`` (``f`` would never see the move).

    ``x`` narrower than float64 (``torch.tensor([3.0, 4.0])`` is float32) gets a
    :class:`LowPrecisionWarning`: 4.4's gradient of x0^2 + x1^2 at (3, 4) comes out
    (5.9891, 8.0013) in float32, where the book prints (6, 8).
    """
    grad = _numerical_gradient(f, x, h, put)
    warn_low_precision("numerical_gradient", x.dtype,
                       "give x as float64, as the book's NumPy arrays are")
    return grad


def _numerical_gradient(f, x, h, put):
    """:func:`numerical_gradient` without its warning (for callers that give their own)."""
    if not is_array(x):
        raise TypeError(f"numerical_gradient: x must be an array (it is perturbed in place, "
                        f"where f reads it), got {type(x).__name__}")
    check_step("numerical_gradient", "h", h)
    xp = get_array_module(x)
    if dtype_kind(x.dtype) not in "fc":
        raise TypeError(f"numerical_gradient: x must be a floating-point array, got dtype "
                        f"{dtype_name(x.dtype)} (perturbing integers by h={h} does nothing)")
    if not backend_of(x).mutable:
        if put is None:
            raise TypeError(f"numerical_gradient: the book's element loop perturbs x in "
                            f"place, and {backend_of(x).name}'s arrays cannot be written: "
                            f"give put= (where f finds x), or use a network's "
                            f"numerical_gradient(x, t) (vectorised), or framework.testing."
                            f"check_backward for a layer")
        return _numerical_gradient_put(f, x, h, put)
    grad = xp.zeros_like(x)
    checked = False
    for idx in itertools.product(*map(range, x.shape)):
        orig = copy(x[idx])
        try:
            x[idx] = orig + h
            fxh1 = f(x)
            x[idx] = orig - h
            fxh2 = f(x)
        finally:  # f raised, or Ctrl-C: x is not left moved by h
            x[idx] = orig
        if not checked:  # once: NumPy's words for a vector were "setting an array element
            _check_scalar(fxh1)  # with a sequence"
            checked = True
        grad[idx] = (fxh1 - fxh2) / (2 * h)
    return grad


def numerical_gradient_2d(f, X, h=1e-4):
    """The book's ``numerical_gradient_2d`` (4.4's gradient field): for 1-D ``X`` the
    gradient of ``f`` at ``X``; for 2-D ``X`` each row's gradient of ``f`` taken at that
    row alone (``f`` gets the row). Unlike :func:`numerical_gradient`, ``f`` here reads
    its argument, so JAX's arrays need no ``put``."""
    if not is_array(X):
        raise TypeError(f"numerical_gradient_2d: X must be an array, got {type(X).__name__}")
    if X.ndim not in (1, 2):
        raise ValueError(f"numerical_gradient_2d: X has shape {tuple(X.shape)}; expected one "
                         f"point (D,) or a row of points (N, D)")
    put = None if backend_of(X).mutable else (lambda moved: None)  # f reads its argument
    if X.ndim == 1:
        grad = _numerical_gradient(f, copy(X), h, put)
    else:
        xp = get_array_module(X)
        rows = [_numerical_gradient(f, copy(X[i, ...]), h, put) for i in range(X.shape[0])]
        grad = xp.stack(rows) if rows else xp.zeros_like(X)
    warn_low_precision("numerical_gradient_2d", X.dtype,
                       "give X as float64, as the book's NumPy arrays are")
    return grad


def _check_scalar(value):
    """``TypeError`` unless ``f`` returned one number (a Python number, or a 0-d array: the
    loss)."""
    shape = getattr(value, "shape", ())
    if shape != () or not (is_array(value) or isinstance(value, (int, float))):
        raise TypeError(f"numerical_gradient: f must return one number (the loss), got "
                        f"{type(value).__name__}" + (f" of shape {tuple(shape)}" if shape
                                                     else ""))


def _numerical_gradient_put(f, x, h, put):
    """:func:`numerical_gradient` for arrays that cannot be written: moved copies put where
    ``f`` reads ``x``, one element at a time, and ``x`` put back."""
    xp = get_array_module(x)
    values = []
    try:
        for idx in itertools.product(*map(range, x.shape)):
            moved = xpx.at(x)[idx].add(h, copy=True)
            put(moved)
            fxh1 = f(moved)
            moved = xpx.at(x)[idx].add(-h, copy=True)
            put(moved)
            fxh2 = f(moved)
            if not values:
                _check_scalar(fxh1)
            values.append((fxh1 - fxh2) / (2 * h))
    finally:
        put(x)
    if not values:
        return xp.zeros_like(x)
    return xp.reshape(xp.stack(values), x.shape)


def numerical_gradient_stacked(f_stack, x, h=1e-4, chunk=4096):
    """df/dx by central differences, many elements per evaluation.

    ``f_stack(index, delta)`` must return, as a ``(K,)`` array, the function
    at K copies of ``x``, copy k with flat element ``index[k]`` moved by
    ``delta`` (see ``models.base.Network.numerical_gradient``). It is called with ``chunk``
    elements at a time, so a network's full numerical gradient takes a few
    dozen vectorised evaluations instead of two forward passes per element.
    Equal to :func:`numerical_gradient` up to rounding (about 1e-12 in float64).
    """
    check_step("numerical_gradient_stacked", "h", h)
    xp = get_array_module(x)
    if dtype_kind(x.dtype) not in "fc":
        raise TypeError(f"numerical_gradient_stacked: x must be a floating-point array, got "
                        f"dtype {dtype_name(x.dtype)}")
    n = size(x)
    where = on_device_of(xp, x)
    grad = xp.zeros(n, dtype=x.dtype, **where)
    for start in range(0, n, chunk):
        index = xp.arange(start, min(start + chunk, n), **where)
        grad = xpx.at(grad)[start:start + index.shape[0]].set(
            (f_stack(index, h) - f_stack(index, -h)) / (2 * h))  # JAX: a new array
    return xp.reshape(grad, x.shape)


def gradient_check(model, x, t, backprop=None):
    """Compare ``model.numerical_gradient`` with ``model.gradient`` on one batch.

    Returns ``{name: (mean_abs_diff, max_rel_err)}`` per parameter, as Python
    floats. The mean absolute difference is the book's figure. The relative
    error is |a - b| / max(|a|, |b|, floor) per element, where the floor is
    1/1000 of the parameter's largest gradient: central differences carry
    about 1e-12 of rounding noise in float64, which would swamp the ratio for
    entries that are (nearly) zero in exact arithmetic. Run it in float64:
    float32 rounding swamps the comparison (a float32 loss near 2.3 moves in
    steps of 2.4e-7, which central differences with h = 1e-4 turn into about
    1e-3 of noise per element).

    ``backprop``, where given, is a second network of the same architecture
    (the float32 one a run trains, say) whose ``gradient`` is checked instead,
    at ``x`` cast to its dtype, against ``model``'s numerical gradient: how far
    the gradients training uses are from the float64 reference. Give both the
    same weights (the float32 values, in the float64 model) and ``x`` already
    rounded to that dtype, so that only the arithmetic differs.
    """
    if backprop is None:
        bp = model.gradient(x, t)  # first: a dropout layer's mask is then the one both use
    else:
        xp = get_array_module(x)
        wide = next(iter(model.params.values())).dtype
        narrow = next(iter(backprop.params.values())).dtype
        bp = {key: xp.astype(g, wide)
              for key, g in backprop.gradient(xp.astype(x, narrow), t).items()}
    num = model.numerical_gradient(x, t)
    result = {}
    for key in num:
        xp = get_array_module(bp[key])
        diff = xp.abs(bp[key] - num[key])
        scale = xp.maximum(xp.abs(bp[key]), xp.abs(num[key]))
        scale = xp.maximum(scale, 1e-3 * xp.max(scale))
        rel = xp.max(diff / xp.where(scale > 0, scale, xp.ones_like(scale)))
        result[key] = (float(xp.mean(diff)), float(rel))
    return result
