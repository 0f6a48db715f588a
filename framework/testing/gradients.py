"""Gradient checks: a layer's ``backward`` against central differences of its ``forward``
(:func:`check_backward`), a network's ``gradient`` against its ``numerical_gradient``
(:func:`check_model`)."""


import inspect
import numbers
import warnings

import numpy  # host-side comparisons and seeded draws; compute stays on the inputs' backend

import array_api_extra as xpx

import backends
from framework import gradient
from framework.layers import Relu
from framework.testing.compare import worst_elements, assert_allclose_report, tolerances


def _as_tuple(x):
    if isinstance(x, (tuple, list)):
        return tuple(x)
    return (x,)


def _is_float_array(x):
    return backends.is_array(x) and backends.dtype_kind(x.dtype) == "f"


def check_backward(layer, inputs, dout=None, *, params=(), eps=1e-4, atol=None, rtol=None,
                   mode="full", directions=4, seed=0, forward_kwargs=None):
    """Check ``layer.backward`` against central differences of ``layer.forward``.

    Calls ``layer.forward(*inputs, **forward_kwargs)`` and
    ``layer.backward(dout)``, then compares every input gradient that
    ``backward`` returns (one array, or a tuple in the inputs' order; inputs
    past the end of it, or given ``None``, are not differentiated: labels) and, for each name in
    ``params`` (a list of names, or one),
    the gradient the layer stored (``dW`` for ``"W"``), with the central
    difference of ``f = sum(forward(...) * dout)``:
    ``(f(p + eps e_i) - f(p - eps e_i)) / 2 eps``.

    Everything runs in float64: inputs, ``dout`` and the named parameters
    are cast copies (the layer's own parameters are put back afterwards), so
    a float32 layer is checked in float64 and the failure message says so.
    ``dout`` defaults to a seeded standard-normal array. Arrays stay on
    their backend; a CuPy layer is checked on the GPU.

    ``mode="full"`` differences every element; ``mode="random"`` checks
    ``directions`` seeded random directions ``v`` per array instead,
    comparing ``<grad, v>`` with ``(f(p + eps v) - f(p - eps v)) / 2 eps``:
    the fast mode for big layers.

    A ``forward`` that writes into one of its inputs fails as such (``AssertionError``:
    the caller's array changes under it); ``backward`` is given a copy of ``dout``, which
    it may write into (the book's Relu does), and what it returns is copied before the
    differences run ``forward`` again, so a layer that reuses a buffer is checked right.

    Layers with state that a forward pass changes (a dropout generator's
    position, batch norm's running averages) list those attributes in
    ``layer.buffers``: they are restored before every evaluation, so each
    sees the same mask, and after the check.

    Raises ``AssertionError`` naming the array and its worst elements
    (index, analytic value, numerical value, relative error), or saying that there was
    nothing to check (a backward that returned None for every input, with no
    ``params``). Returns ``{name: max |analytic - numerical|}`` when everything passes.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    if mode not in ("full", "random"):
        raise ValueError(f"check_backward: mode={mode!r}; expected 'full' or 'random'")
    gradient.check_step("check_backward", "eps", eps)
    if isinstance(directions, bool) or not isinstance(directions, numbers.Integral) \
            or directions < 1:
        raise ValueError(f"check_backward: directions must be a whole number at least 1 (the "
                         f"random directions per array, mode='random'), got {directions!r}")
    forward_kwargs = dict(forward_kwargs or {})
    rtol, atol = tolerances("float64", rtol, atol)
    if isinstance(inputs, list) and inputs and all(isinstance(x, numbers.Number)
                                                   for x in inputs):  # data, not inputs
        raise TypeError("check_backward: inputs is a list of numbers; expected an array "
                        "(xp.asarray(...), on the backend under test), or a tuple of arrays "
                        "for several inputs")
    inputs = _as_tuple(inputs)
    for i, x in enumerate(inputs):
        if isinstance(x, (list, tuple)):
            raise TypeError(f"check_backward: input {i} is a {type(x).__name__}; expected an "
                            f"array (xp.asarray(...), on the backend under test). Several "
                            f"inputs go as a tuple of arrays")
    if isinstance(params, str):
        params = (params,)
    missing = [name for name in params if not hasattr(layer, name)]
    if missing:
        arrays = sorted(k for k, v in vars(layer).items() if _is_float_array(v))
        raise ValueError(f"check_backward: params={list(params)!r}: {type(layer).__name__} has "
                         f"no attribute {', '.join(map(repr, missing))}; its floating-point "
                         f"arrays: {', '.join(arrays) or 'none'}")
    if not params and not any(_is_float_array(x) for x in inputs):
        given = ", ".join(
            f"input {i} is "
            f"{backends.dtype_name(x.dtype) if backends.is_array(x) else type(x).__name__}"
            for i, x in enumerate(inputs)) or "no inputs"
        raise TypeError(f"check_backward: nothing to difference: {given}; central differences "
                        f"need a floating-point input (xp.asarray(..., dtype=xp.float64)) or "
                        f"params=('W', ...) naming the layer's parameters")
    originals = {name: getattr(layer, name) for name in params}
    for name, p in originals.items():
        if not _is_float_array(p):
            raise TypeError(f"check_backward: {type(layer).__name__}.{name} is not a "
                            f"floating-point array")
    low_precision = [f"input {i} ({backends.dtype_name(x.dtype)})" for i, x in enumerate(inputs)
                     if _is_float_array(x) and backends.dtype_name(x.dtype) != "float64"]
    low_precision += [f"{name} ({backends.dtype_name(p.dtype)})" for name, p in originals.items()
                      if backends.dtype_name(p.dtype) != "float64"]
    note = (f" (checked in float64; the layer was given {', '.join(low_precision)})"
            if low_precision else "")
    x64 = [_float64(x) if _is_float_array(x) else x for x in inputs]
    buffers = {name: _copy(getattr(layer, name)) for name in getattr(layer, "buffers", ())}
    try:
        for name, p in originals.items():
            setattr(layer, name, _float64(p))

        def rewind():
            for name, value in buffers.items():
                _restore(layer, name, value)

        def f():
            rewind()
            out = layer.forward(*x64, **forward_kwargs)
            return backends.get_array_module(out).sum(out * dout64)

        rewind()
        given = [backends.to_numpy(x).copy() if _is_float_array(x) else None for x in x64]
        out = layer.forward(*x64, **forward_kwargs)
        _check_unchanged(layer, x64, given)
        xp = backends.get_array_module(out)
        on = backends.backend_of(out)
        if dout is None:
            dout64 = on.asarray(numpy.random.default_rng(seed).standard_normal(out.shape),
                                dtype="float64")
        else:
            dout64 = _float64(dout) if backends.is_array(dout) else dout
            if hasattr(dout64, "shape") and dout64.shape != out.shape:
                raise ValueError(f"check_backward: dout has shape {tuple(dout64.shape)}, the "
                                 f"output {tuple(out.shape)}")
        # backward may write into dout (the book's Relu does), and forward, run again for
        # the differences, into buffers of its own: each keeps a copy of what it is given or
        # gives, so neither can move the other's numbers
        returned = tuple(_copy(r) for r in _as_tuple(layer.backward(_copy(dout64))))
        # (label, the array, how to put another in its place, the analytic gradient): the
        # checks evaluate f at moved copies put in the array's place, and put it back, so
        # nothing is written into an array (JAX's cannot be)
        targets = []
        for i, x in enumerate(x64):
            if not _is_float_array(x):
                continue
            if i >= len(returned) or returned[i] is None:
                continue  # not differentiated by the layer (labels, say)
            targets.append((f"input {i}", x, lambda a, i=i: x64.__setitem__(i, a),
                            returned[i]))
        for name in params:
            grad = getattr(layer, "d" + name, None)
            if grad is None:
                raise AssertionError(f"check_backward: {type(layer).__name__} has no d{name} "
                                     f"after backward")
            targets.append((name, getattr(layer, name),
                            lambda a, name=name: setattr(layer, name, a), _copy(grad)))
        if not targets:  # a backward that forgot `return dx` would pass a check of nothing
            raise AssertionError(
                f"check_backward: nothing to check: {type(layer).__name__}.backward returned "
                f"{'None' if not returned or all(r is None for r in returned) else 'no array'} "
                f"for every floating-point input, and params names none (a backward returns "
                f"dx; name params=('W', ...) to check only the gradients the layer stores)")
        rng = numpy.random.default_rng(seed + 1)
        report = {}
        for label, wrt, put, analytic in targets:
            what = f"{type(layer).__name__} gradient of {label}{note}"
            if tuple(analytic.shape) != tuple(wrt.shape):
                raise AssertionError(f"{what}: backward gave shape {tuple(analytic.shape)}, "
                                     f"the array has {tuple(wrt.shape)}")
            if mode == "full":
                numeric = _elementwise_difference(f, wrt, put, eps)
                assert_allclose_report(analytic, numeric, rtol, atol, what)
                diff = numpy.abs(backends.to_numpy(analytic) - numeric)
            else:
                got, want = [], []
                for _ in range(directions):
                    v = on.asarray(rng.standard_normal(wrt.shape), dtype="float64")
                    v /= xp.sqrt(xp.sum(v * v))
                    got.append(xp.sum(analytic * v))
                    want.append(_directional_difference(f, wrt, put, v, eps))
                got, want = xp.stack(got), xp.stack(want)
                assert_allclose_report(got, want, rtol, atol,
                                       f"{what}, along {directions} random directions")
                diff = backends.to_numpy(abs(got - want))
            report[label] = float(diff.max()) if diff.size else 0.0
        return report
    finally:
        for name, p in originals.items():
            setattr(layer, name, p)
        for name, value in buffers.items():
            _restore(layer, name, value)


def _check_unchanged(layer, inputs, given):
    """``AssertionError`` where ``forward`` wrote into one of its inputs (``given``: a host
    copy of each floating-point one from before): the caller's array changes under it, as
    the output of the layer before it would in a network, whose backward may still need it
    (the book's Relu copies ``x`` before zeroing for this). The gradient check that followed
    blamed the gradient."""
    for i, (x, before) in enumerate(zip(inputs, given)):
        if before is None:
            continue
        after = backends.to_numpy(x)
        if not numpy.array_equal(after, before, equal_nan=True):
            changed = int(numpy.sum(~((after == before) | (numpy.isnan(after)
                                                          & numpy.isnan(before)))))
            raise AssertionError(
                f"check_backward: {type(layer).__name__}.forward changed input {i} in place "
                f"({changed} of {before.size} elements): the caller's array, which the layer "
                f"before it in a network may still need for its backward; compute into a new "
                f"array (out = x.copy() before writing, as the book's Relu does)")


def _float64(x):
    return backends.get_array_module(x).astype(x, backends.backend_of(x).dtype("float64"))


def _copy(value):
    return backends.copy(value) if backends.is_array(value) else value


def _restore(layer, name, value):
    current = getattr(layer, name)
    if hasattr(current, "shape") and hasattr(value, "shape") and current.shape == value.shape:
        # in place: whoever holds the array sees it restored (JAX: a new array, set below)
        restored = xpx.at(current)[...].set(value)
        if restored is current:
            return
    setattr(layer, name, _copy(value))


def _at(f, x, put, moved):
    """``f()`` with ``moved`` put where ``x`` was, and ``x`` put back."""
    put(moved)
    try:
        return f()
    finally:
        put(x)


def _elementwise_difference(f, x, put, eps):
    """The central difference of ``f`` along every element of ``x``, as a host array."""
    out = numpy.zeros(tuple(x.shape))
    for idx in numpy.ndindex(*x.shape):
        up = _at(f, x, put, xpx.at(x)[idx].add(eps, copy=True))
        down = _at(f, x, put, xpx.at(x)[idx].add(-eps, copy=True))
        out[idx] = float(backends.to_numpy((up - down) / (2 * eps)))
    return out


def _directional_difference(f, x, put, v, eps):
    return (_at(f, x, put, x + eps * v) - _at(f, x, put, x - eps * v)) / (2 * eps)


def check_model(model, x, t, *, rtol=None, atol=None):
    """A network's ``gradient`` against its ``numerical_gradient``, parameter by parameter.

    ``gradient`` runs first, so a dropout layer's mask is the one both
    use. A network of the user's own that has the book's ``params``, ``loss(x, t)``
    and ``gradient(x, t)`` but no ``numerical_gradient`` is differenced by the book's
    element loop (:func:`framework.gradient.numerical_gradient` on each parameter, its
    ``loss`` read after each move). Tolerances follow the model's dtype (its ``dtype``,
    else its parameters'; build it with ``dtype="float64"``: float32 rounding swamps
    central differences, and a float32 failure says so).
    Returns ``{name: (max abs diff, max relative error)}``; raises
    ``AssertionError`` with a line per parameter and the worst elements of
    each that fails.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    params = getattr(model, "params", None)
    if not params or not hasattr(params, "values"):  # was AttributeError, or StopIteration
        raise TypeError(f"check_model: {type(model).__name__} has no parameters to check: "
                        f"expected the book's params, a dict of arrays by name (got "
                        f"{'none' if params is None else repr(params)})")
    dtype = getattr(model, "dtype", None)
    if dtype is None:
        dtype = next(iter(params.values())).dtype
    dtype = backends.dtype_name(dtype) if not isinstance(dtype, str) else dtype
    rtol, atol = tolerances(dtype, rtol, atol)
    analytic = model.gradient(x, t)
    _check_keys_and_shapes(model, analytic)  # before the numerical gradient's cost
    own = getattr(model, "numerical_gradient", None)
    with warnings.catch_warnings():  # its tolerances follow the dtype, and a failure says so
        warnings.simplefilter("ignore", gradient.LowPrecisionWarning)
        numeric = own(x, t) if own is not None else _differenced(model, x, t)
    lines, failed, report = [], [], {}
    for key in numeric:
        a, n = backends.to_numpy(analytic[key]), backends.to_numpy(numeric[key])
        diff = numpy.abs(a - n)
        scale = numpy.maximum(numpy.abs(a), numpy.abs(n))
        scale = numpy.maximum(scale, 1e-3 * scale.max() if scale.size else 0)
        rel = float((diff / numpy.where(scale > 0, scale, 1)).max()) if diff.size else 0.0
        ok, worst = worst_elements(a, n, rtol, atol)
        report[key] = (float(diff.max()) if diff.size else 0.0, rel)
        lines.append(f"  {key}: max abs diff {report[key][0]:.3g}, max relative error "
                     f"{rel:.3g}  {'ok' if ok else 'FAIL'}")
        if not ok:
            failed.append(key)
            lines += worst
    if failed:
        hint = ("; float32 rounding swamps central differences: build the network with "
                "dtype='float64' to check it" if dtype != "float64" else _kinks(model, x, own))
        if own is None and _unmoved(params, numeric, failed):
            hint = (f"; every difference of {', '.join(failed)} is 0, and "
                    f"{backends.backend_of(next(iter(params.values()))).name}'s arrays are "
                    f"immutable: a moved parameter put in the plain dict params reaches only "
                    f"code that reads the dict, not a layer that holds the array (the book's "
                    f"Affine(W, b)); build the network on models.base.Network "
                    f"(begin/add/finish), whose params pass each new array on to its layer")
        raise AssertionError(f"check_model: {type(model).__name__} ({dtype}): gradient and "
                             f"numerical_gradient differ for {', '.join(failed)}{hint}\n"
                             + "\n".join(lines))
    return report


def _unmoved(params, numeric, failed):
    """Whether the book's element loop moved parameters that nothing read: every difference
    of the failed ones 0, on a library whose arrays are immutable, with a plain dict for
    ``params`` (each moved array was put in the dict, and layers that hold the arrays never
    saw it). Looked at only where the check failed."""
    first = next(iter(params.values()))
    if backends.backend_of(first).mutable or getattr(params, "reaches_layers", False):
        return False
    return all(not numpy.any(backends.to_numpy(numeric[key])) for key in failed)


def _kinks(model, x, numerical_gradient):
    """Where the failure may be the differences', not ``gradient``'s: the ReLU layers whose
    input lies within ``numerical_gradient``'s ``h`` of 0 for some sample, where a central
    difference straddles the kink and is off by design (``"; Relu1's input holds 1 value
    within h=0.0001 of 0 ..."``); ``""`` where none does, or where the network's layers
    cannot be walked. Walks the layers' side-effect-free ``forward_stack``: no running
    average moves, no generator advances. A hint: it never hides the failure itself."""
    try:  # the network's own, else the book's element loop (_differenced)
        h = inspect.signature(numerical_gradient or gradient.numerical_gradient) \
            .parameters["h"].default
        out, near = x[None, ...], []  # a stack of one
        for name, layer in model.layers.items():
            if isinstance(layer, Relu):
                close = backends.to_numpy(out)
                close = numpy.abs(close[numpy.abs(close) < h])
                if close.size:
                    near.append(f"{name}'s input holds {close.size} value"
                                f"{'s' if close.size > 1 else ''} within h={h:g} of 0 (the "
                                f"closest {close.min():.2g})")
            out = layer.forward_stack(out, True)
    except Exception:  # a network of the user's own, say: no hint rather than another error
        return ""
    if not near:
        return ""
    return (f"; {', '.join(near)}: central differences there straddle ReLU's kink, and the "
            f"numerical gradient is off by design; check with other inputs or weights")


def _check_keys_and_shapes(model, grads):
    """``AssertionError`` where ``gradient`` returned no gradient for a parameter, one for a
    name that is no parameter, or one of another shape than its parameter."""
    name = f"check_model: {type(model).__name__}.gradient"
    if not hasattr(grads, "keys"):
        raise AssertionError(f"{name} returned {type(grads).__name__}; expected a dict of "
                             f"gradients by parameter name")
    missing = [k for k in model.params if k not in grads]
    extra = [k for k in grads if k not in model.params]
    if missing or extra:
        said = [f"no gradient for {', '.join(map(repr, missing))}" if missing else "",
                f"gradients for {', '.join(map(repr, extra))}, which are no parameters"
                if extra else ""]
        raise AssertionError(f"{name} returned {'; '.join(filter(None, said))} (the "
                             f"parameters: {', '.join(model.params)})")
    for key, p in model.params.items():
        if tuple(grads[key].shape) != tuple(p.shape):
            raise AssertionError(f"{name} returned {key!r} of shape {tuple(grads[key].shape)}; "
                                 f"the parameter has {tuple(p.shape)}")


def _differenced(model, x, t):
    """The book's numerical gradient of ``model.loss(x, t)`` over each of ``model.params``,
    one element at a time, for a network without a ``numerical_gradient`` of its own."""
    out = {}
    for key, p in model.params.items():
        out[key] = gradient.numerical_gradient(
            lambda _: model.loss(x, t), p,
            put=lambda a, key=key: model.params.__setitem__(key, a))
    return out
