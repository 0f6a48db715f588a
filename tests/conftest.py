"""Fixtures shared by the tests: every test body runs once per backend."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import backends  # noqa: E402

BACKENDS = ("numpy", "cupy")


@pytest.fixture(autouse=True)
def keep_default_backend():
    """Whatever a test switches with backends.use(), the next test starts from the same default."""
    previous = backends._default
    yield
    backends._default = previous


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The backend under test, made the default for the test's duration.

    CuPy cases are skipped, with the reason, where no GPU is usable.
    """
    name = request.param
    if name not in backends.available():
        pytest.skip(f"cupy backend not usable here: {backends._probe_cupy()[1]}")
    previous = backends._default
    yield backends.use(name)
    backends._default = previous


@pytest.fixture
def on_cupy():
    """CuPy as the default backend, for the GPU-only tests (which skip without it)."""
    previous = backends._default
    yield backends.use("cupy")
    backends._default = previous


@pytest.fixture
def xp(backend):
    """The array module of the backend under test."""
    return backend.xp


def to_host(x):
    return backends.to_numpy(x)
