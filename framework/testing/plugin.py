"""The pytest plugin: ``--xpnet-backend``, the ``backends`` marker, and the ``backend``,
``xp`` and ``on_cupy`` fixtures (what they do: :mod:`framework.testing`)."""

import pytest

import backends

OPTION = "--xpnet-backend"
STANDARD = "2024.12"  # the Array API version the generic code is written against


def pytest_addoption(parser):
    parser.addoption(OPTION, choices=backends.NAMES + ("all",), default=None,
                     help="run backend-parametrised tests on this backend only (default: "
                          "all, or the one XPNET_BACKEND names)")


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run this test only on these "
                                       "backends ('numpy', 'cupy', 'torch', "
                                       "'array_api_strict')")


def selected_backends(config):
    """The backend names a run parametrises over: the option, else XPNET_BACKEND (the
    settings'), else all."""
    choice = config.getoption(OPTION, default=None)
    if choice is None:
        env = backends.settings().backend
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


def _usable_or_skip(name, device=None):
    """``(name, device)`` to use, or a skip saying why the backend cannot be used here."""
    usable, why = backends.backend_class(name).usable()
    if not usable:
        pytest.skip(f"{name} backend not usable here: {why}")
    settings = backends.settings()
    if device is None and settings.device and settings.backend == name:
        device = settings.device  # XPNET_BACKEND=torch XPNET_DEVICE=mps pytest: that device
    return name, device


def _strict_flags(backend):
    """The backend held to the standard version xpnet targets (2024.12) for the test, where
    it can be (array-api-strict: its flags); nothing for the others."""
    return backend.held_to_standard(STANDARD)


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
    with backends.using(*_usable_or_skip(name)) as chosen, _strict_flags(chosen):
        yield chosen


@pytest.fixture
def xp(backend):
    """The array module of the backend under test."""
    return backend.xp


@pytest.fixture
def on_cupy():
    """CuPy as the default backend, for GPU-only tests; skipped where no GPU is usable."""
    with backends.using(*_usable_or_skip("cupy")) as chosen:
        yield chosen
