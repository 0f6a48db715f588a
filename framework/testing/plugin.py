"""The pytest plugin: ``--xpnet-backend``, the ``backends`` marker, and the ``backend``,
``xp`` and ``on_cupy`` fixtures (what they do: :mod:`framework.testing`)."""

import argparse
import contextlib
import re

import pytest

import backends

OPTION = "--xpnet-backend"
STANDARD = "2024.12"  # the Array API version the generic code is written against


REQUIRE = "--xpnet-require"


def backend_names(text):
    """The value of ``--xpnet-backend``: ``"numpy"``, ``"numpy,torch"`` or ``"all"`` ->
    the names, in the registry's order (argparse's error for one it does not know)."""
    names = {n.strip().lower() for n in text.split(",") if n.strip()}
    if names == {"all"}:
        return backends.NAMES
    unknown = names - set(backends.NAMES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a backend, comma-separated backends or 'all' (backends: "
            f"{', '.join(backends.NAMES)}), got {text!r}")
    return tuple(n for n in backends.NAMES if n in names)


def pytest_addoption(parser):
    parser.addoption(OPTION, type=backend_names, default=None, metavar="NAMES",
                     help="run backend-parametrised tests on these backends only, "
                          "comma-separated (default: all, or the one XPNET_BACKEND names)")
    parser.addoption(REQUIRE, default="", metavar="NAMES",
                     help="comma-separated backends that must be usable here (a GPU "
                          "machine's cupy,torch): a test that would skip because one is not, "
                          "or whose skip names one, fails instead")


def required_backends(config):
    """The backends ``--xpnet-require`` names (lower-cased), checked against the registry."""
    names = {n.strip().lower() for n in config.getoption(REQUIRE, default="").split(",")
             if n.strip()}
    unknown = names - set(backends.NAMES)
    if unknown:
        raise pytest.UsageError(f"{REQUIRE}: unknown backend(s) {sorted(unknown)}; expected "
                                f"some of {', '.join(backends.NAMES)}")
    return names


NOT_USABLE = "backend not usable here"


def unusable(name, why):
    """The one wording of a skip for a backend this machine cannot use, which
    ``--xpnet-require`` recognises: ``"<name> backend not usable here: <why>"``."""
    return f"{name} {NOT_USABLE}: {why}"


_NAMED = re.compile(r"\b(\w+) " + NOT_USABLE + r"|could not import '(\w+)'")


def skipped_for(reason):
    """The backends a skip's reason says are missing (the wording of ``unusable``, or
    ``pytest.importorskip``'s), as a set of names."""
    return {a or b for a, b in _NAMED.findall(reason)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``--xpnet-require``, a skip because a required backend cannot be used here is
    a failure: on the machine meant to test it, a missing library or device must not pass
    as a skip. Other skips (a test for another backend, a second GPU this machine lacks)
    stay skips."""
    outcome = yield
    report = outcome.get_result()
    required = getattr(item.config, "_xpnet_required", None)
    if not required or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    named = skipped_for(reason) & required
    if named:
        report.outcome = "failed"
        report.longrepr = (f"{REQUIRE} {','.join(sorted(required))}: this test skipped for a "
                           f"required backend ({', '.join(sorted(named))}): {reason}")


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run this test only on these "
                                       "backends ('numpy', 'cupy', 'torch', "
                                       "'array_api_strict')")
    config._xpnet_required = required_backends(config)


def selected_backends(config):
    """The backend names a run parametrises over: the option, else XPNET_BACKEND (the
    settings'), else all."""
    chosen = config.getoption(OPTION, default=None)
    if chosen is None:
        env = backends.settings().backend
        chosen = (env,) if env in backends.NAMES else backends.NAMES
    return chosen


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


def _usable_or_skip(name, device=None, config=None):
    """``(name, device)`` to use, or a skip saying why the backend cannot be used here (a
    failure where ``--xpnet-require`` names it)."""
    usable, why = backends.backend_class(name).usable()
    if not usable:
        if config is not None and name in getattr(config, "_xpnet_required", ()):
            pytest.fail(f"{name} backend required ({REQUIRE}) but not usable here: {why}")
        pytest.skip(unusable(name, why))
    settings = backends.settings()
    if device is None and settings.device and settings.backend == name:
        device = settings.device  # XPNET_BACKEND=torch XPNET_DEVICE=mps pytest: that device
    return name, device


@contextlib.contextmanager
def as_tested(backend):
    """A test's context on ``backend``: held to the standard version xpnet targets (2024.12)
    where it can be (array-api-strict's flags), and float64 where the library has it behind
    a switch (JAX's ``jax_enable_x64``: the gradient checks run in float64); each given
    back after the test."""
    with backend.held_to_standard(STANDARD), backend.with_float64():
        yield


@pytest.fixture(autouse=True)
def keep_default_backend():
    """Whatever a test switches with backends.use(), the next test starts from the same
    default backend and settings (the registry's state is put back)."""
    with backends.kept():
        yield


@pytest.fixture
def backend(request):
    """The backend under test, made the default for the test's duration."""
    name = getattr(request, "param", None)
    if name is None:  # used without parametrisation (e.g. from another fixture's request)
        name = selected_backends(request.config)[0]
    with backends.using(*_usable_or_skip(name, config=request.config)) as chosen, \
            as_tested(chosen):
        yield chosen


@pytest.fixture
def xp(backend):
    """The array module of the backend under test."""
    return backend.xp


@pytest.fixture
def on_cupy(request):
    """CuPy as the default backend, for GPU-only tests; skipped where no GPU is usable."""
    with backends.using(*_usable_or_skip("cupy", config=request.config)) as chosen:
        yield chosen
