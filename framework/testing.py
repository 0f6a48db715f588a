"""Testing layers on every backend: pytest fixtures and numerical checks.

Installed with xpnet (``pip install xpnet``, or ``-e .``), this module is a
pytest plugin (entry point ``pytest11``), so any project's tests get, with
no conftest:

``backend``
    The :class:`backends.Backend` under test, made the default for the test
    and restored after. A test that uses it (or ``xp``) runs once per
    backend, with ids ``test_x[numpy]``, ``[cupy]``, ``[torch]`` and
    ``[array_api_strict]``; a case whose library or device is not usable
    here skips, with the reason. array-api-strict is held to the standard's
    2024.12 version for the test.
``xp``
    The namespace of ``backend`` (``numpy``, ``cupy``, PyTorch's through
    ``array_api_compat``, ``array_api_strict``).
``on_cupy``
    CuPy as the default backend, for GPU-only tests; skips without a GPU.

Which backends run: ``pytest --xpnet-backend=numpy`` (or any other name, or
``all``, the default); without the option, ``XPNET_BACKEND`` in the
environment picks one (with ``XPNET_DEVICE`` its device, e.g. ``mps``).
``@pytest.mark.backends("numpy")`` limits one test.

The checks:

:func:`check_backward`
    a layer's ``backward`` against central differences of its ``forward``;
:func:`check_model`
    a network's ``gradient`` against its ``numerical_gradient``;
:func:`check_parity`
    a function on NumPy inputs against the same on another backend (CuPy by
    default; any two).

Tolerances are chosen by dtype (:data:`TOLERANCES`): the gradient checks
compute in float64, where central differences with ``eps = 1e-4`` agree
with an exact gradient to about 1e-8; parity in float32 allows for the
different summation orders of two libraries. Each can be overridden.
"""

import contextlib
import itertools
import os

import numpy  # host-side comparisons and seeded draws; compute stays on the inputs' backend
import pytest

import backends

#: (rtol, atol) per dtype: an element passes when |a - b| <= atol + rtol * |b|
TOLERANCES = {
    "float64": (1e-5, 1e-7),
    "float32": (1e-3, 1e-5),
    "float16": (1e-2, 1e-3),
}

OPTION = "--xpnet-backend"
STANDARD = "2024.12"  # the Array API version the generic code is written against


def tolerances(dtype, rtol=None, atol=None):
    """``(rtol, atol)`` for ``dtype`` from :data:`TOLERANCES`, each overridden where given."""
    name = dtype if isinstance(dtype, str) else backends.dtype_name(dtype)
    default_rtol, default_atol = TOLERANCES.get(name, TOLERANCES["float32"])
    return (default_rtol if rtol is None else rtol), (default_atol if atol is None else atol)


# --- the pytest plugin ------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption(OPTION, choices=backends.NAMES + ("all",), default=None,
                     help="run backend-parametrised tests on this backend only (default: "
                          "all, or the one XPNET_BACKEND names)")


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run this test only on these "
                                       "backends ('numpy', 'cupy', 'torch', "
                                       "'array_api_strict')")


def selected_backends(config):
    """The backend names a run parametrises over: the option, else XPNET_BACKEND, else all."""
    choice = config.getoption(OPTION, default=None)
    if choice is None:
        env = os.environ.get(backends.ENV_VAR, "").strip().lower()
        choice = env if env in backends.NAMES else "all"
    return backends.NAMES if choice == "all" else (choice,)


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    names = selected_backends(metafunc.config)
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        unknown = set(marker.args) - set(backends.NAMES)
        if unknown:
            raise ValueError(f"@pytest.mark.backends: unknown backend(s) {sorted(unknown)}; "
                             f"expected some of {backends.NAMES}")
        names = tuple(n for n in names if n in marker.args)
    metafunc.parametrize("backend", names, indirect=True, ids=names)


def _use_or_skip(name, device=None):
    usable, why = backends.namespaces.LIBRARIES[name].usable()
    if not usable:
        pytest.skip(f"{name} backend not usable here: {why}")
    env_device = os.environ.get(backends.DEVICE_ENV_VAR) or None
    if device is None and env_device and os.environ.get(backends.ENV_VAR, "") == name:
        device = env_device  # XPNET_BACKEND=torch XPNET_DEVICE=mps pytest: that device
    return backends.use(name, device=device)


def _strict_flags(backend):
    """array-api-strict held to the standard version xpnet targets (2024.12) for the test."""
    if backend.name != "array_api_strict":
        return contextlib.nullcontext()
    return backend.xp.ArrayAPIStrictFlags(api_version=STANDARD)


@pytest.fixture(autouse=True)
def keep_default_backend():
    """Whatever a test switches with backends.use(), the next test starts from the same default."""
    previous = backends._default
    yield
    backends._default = previous


@pytest.fixture
def backend(request):
    """The backend under test, made the default for the test's duration."""
    name = getattr(request, "param", None)
    if name is None:  # used without parametrisation (e.g. from another fixture's request)
        name = selected_backends(request.config)[0]
    chosen = _use_or_skip(name)
    with _strict_flags(chosen):
        yield chosen


@pytest.fixture
def xp(backend):
    """The array module of the backend under test."""
    return backend.xp


@pytest.fixture
def on_cupy():
    """CuPy as the default backend, for GPU-only tests; skipped where no GPU is usable."""
    return _use_or_skip("cupy")


# --- comparisons ------------------------------------------------------------------------

def _worst(analytic, numeric, rtol, atol, count=5):
    """Lines for the ``count`` worst elements of two host arrays, and whether all pass."""
    a = numpy.asarray(analytic, dtype=numpy.float64).reshape(numpy.shape(analytic))
    b = numpy.asarray(numeric, dtype=numpy.float64).reshape(numpy.shape(numeric))
    excess = numpy.abs(a - b) - (atol + rtol * numpy.abs(b))
    bad = ~(excess <= 0)  # NaN counts as bad
    if not bad.any():
        return True, []
    order = numpy.argsort(numpy.where(numpy.isnan(excess), numpy.inf, excess), axis=None)[::-1]
    lines = []
    for flat in order[:count]:
        index = numpy.unravel_index(flat, a.shape) if a.ndim else ()
        va, vb = a[index], b[index]
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
    ok, lines = _worst(a, b, rtol, atol)
    if not ok:
        text = "\n".join(lines).replace("analytic", labels[0]).replace("numerical", labels[1])
        raise AssertionError(f"{what}:\n{text}")


# --- check_backward ---------------------------------------------------------------------

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
    past the end of it, or given ``None``, are not differentiated: labels) and, for each name in ``params``,
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

    Layers with state that a forward pass changes (a dropout generator's
    position, batch norm's running averages) list those attributes in
    ``layer.buffers``: they are restored before every evaluation, so each
    sees the same mask, and after the check.

    Raises ``AssertionError`` naming the array and its worst elements
    (index, analytic value, numerical value, relative error). Returns
    ``{name: max |analytic - numerical|}`` when everything passes.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    if mode not in ("full", "random"):
        raise ValueError(f"check_backward: mode={mode!r}; expected 'full' or 'random'")
    forward_kwargs = dict(forward_kwargs or {})
    rtol, atol = tolerances("float64", rtol, atol)
    inputs = _as_tuple(inputs)
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
        out = layer.forward(*x64, **forward_kwargs)
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
        returned = _as_tuple(layer.backward(dout64))
        targets = []  # (label, array perturbed, analytic gradient)
        for i, x in enumerate(x64):
            if not _is_float_array(x):
                continue
            if i >= len(returned) or returned[i] is None:
                continue  # not differentiated by the layer (labels, say)
            targets.append((f"input {i}", x, returned[i]))
        for name in params:
            grad = getattr(layer, "d" + name, None)
            if grad is None:
                raise AssertionError(f"check_backward: {type(layer).__name__} has no d{name} "
                                     f"after backward")
            targets.append((name, getattr(layer, name), grad))
        rng = numpy.random.default_rng(seed + 1)
        report = {}
        for label, wrt, analytic in targets:
            what = f"{type(layer).__name__} gradient of {label}{note}"
            if tuple(analytic.shape) != tuple(wrt.shape):
                raise AssertionError(f"{what}: backward gave shape {tuple(analytic.shape)}, "
                                     f"the array has {tuple(wrt.shape)}")
            if mode == "full":
                numeric = _central_differences(f, wrt, eps)
                assert_allclose_report(analytic, numeric, rtol, atol, what)
                diff = backends.to_numpy(abs(analytic - numeric))
            else:
                got, want = [], []
                for _ in range(directions):
                    v = on.asarray(rng.standard_normal(wrt.shape), dtype="float64")
                    v /= xp.sqrt(xp.sum(v * v))
                    got.append(xp.sum(analytic * v))
                    want.append(_directional_difference(f, wrt, v, eps))
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


def _float64(x):
    return backends.get_array_module(x).astype(x, backends.backend_of(x).dtype("float64"))


def _copy(value):
    return backends.copy(value) if backends.is_array(value) else value


def _restore(layer, name, value):
    current = getattr(layer, name)
    if hasattr(current, "shape") and hasattr(value, "shape") and current.shape == value.shape:
        current[...] = value  # in place: whoever holds the array sees it restored
    else:
        setattr(layer, name, _copy(value))


def _central_differences(f, x, eps):
    """df/dx element by element, perturbing ``x`` in place on its backend and restoring it."""
    xp = backends.get_array_module(x)
    grad = xp.zeros_like(x)
    for index in itertools.product(*map(range, x.shape)):  # written in place: no views needed
        orig = backends.copy(x[index])
        x[index] = orig + eps
        up = f()
        x[index] = orig - eps
        down = f()
        x[index] = orig
        grad[index] = (up - down) / (2 * eps)
    return grad


def _directional_difference(f, x, v, eps):
    orig = backends.copy(x)
    x += eps * v
    up = f()
    x[...] = orig
    x -= eps * v
    down = f()
    x[...] = orig
    return (up - down) / (2 * eps)


# --- check_model ------------------------------------------------------------------------

def check_model(model, x, t, *, rtol=None, atol=None):
    """A network's ``gradient`` against its ``numerical_gradient``, parameter by parameter.

    ``gradient`` runs first, so a dropout layer's mask is the one both
    use. Tolerances follow the model's dtype (build it with
    ``dtype="float64"``: float32 rounding swamps central differences).
    Returns ``{name: (max abs diff, max relative error)}``; raises
    ``AssertionError`` with a line per parameter and the worst elements of
    each that fails.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    rtol, atol = tolerances(model.dtype, rtol, atol)
    analytic = model.gradient(x, t)
    numeric = model.numerical_gradient(x, t)
    lines, failed, report = [], [], {}
    for key in numeric:
        a, n = backends.to_numpy(analytic[key]), backends.to_numpy(numeric[key])
        diff = numpy.abs(a - n)
        scale = numpy.maximum(numpy.abs(a), numpy.abs(n))
        scale = numpy.maximum(scale, 1e-3 * scale.max() if scale.size else 0)
        rel = float((diff / numpy.where(scale > 0, scale, 1)).max()) if diff.size else 0.0
        ok, worst = _worst(a, n, rtol, atol)
        report[key] = (float(diff.max()) if diff.size else 0.0, rel)
        lines.append(f"  {key}: max abs diff {report[key][0]:.3g}, max relative error "
                     f"{rel:.3g}  {'ok' if ok else 'FAIL'}")
        if not ok:
            failed.append(key)
            lines += worst
    if failed:
        raise AssertionError(f"check_model: {type(model).__name__} "
                             f"({backends.dtype_name(model.dtype)}): gradient and "
                             f"numerical_gradient differ for {', '.join(failed)}\n"
                             + "\n".join(lines))
    return report


# --- check_parity -----------------------------------------------------------------------

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
    """Compare two nested results leaf by leaf on the host (the second half of check_parity)."""
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    want, have = list(_leaves(expected)), list(_leaves(got))
    if [p for p, _ in want] != [p for p, _ in have]:
        raise AssertionError(f"check_parity: the {labels[0]} and {labels[1]} results differ in "
                             f"structure: {[p for p, _ in want]} against {[p for p, _ in have]}")
    for (path, a), (_, b) in zip(want, have):
        a, b = numpy.asarray(backends.to_numpy(a)), numpy.asarray(backends.to_numpy(b))
        if a.dtype.kind in "biu" and b.dtype.kind in "biu":
            if not numpy.array_equal(a, b):
                raise AssertionError(f"check_parity: {path} differs between {labels[0]} and "
                                     f"{labels[1]}: {a!r} against {b!r}")
            continue
        r, t = tolerances(a.dtype if a.dtype.kind == "f" else "float64", rtol, atol)
        assert_allclose_report(b, a, r, t, f"check_parity: {path} ({a.dtype})",
                               labels=(labels[1], labels[0]))


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
    previous = backends._default
    specs = [(b, None) if isinstance(b, str) else tuple(b) for b in between]
    results = []
    try:
        for name, device in specs:
            usable, why = backends.namespaces.LIBRARIES[name].usable()
            if not usable:
                pytest.skip(f"check_parity: the {name} half cannot run here: {why}")
            chosen = backends.use(name, device=device)
            with _strict_flags(chosen):
                moved = [chosen.asarray(x) if isinstance(x, numpy.ndarray) else x
                         for x in host_inputs]
                results.append(fn(*moved))
    finally:
        backends._default = previous
    labels = tuple(name if device is None else f"{name} on {device}" for name, device in specs)
    assert_outputs_close(results[0], results[1], rtol, atol, labels=labels)
    return results[0], results[1]
