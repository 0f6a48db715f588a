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

Which backends run: ``pytest --xpnet-backend=numpy`` (or any other names,
comma-separated, or ``all``, the default); without the option, ``XPNET_BACKEND`` in the
environment picks one (with ``XPNET_DEVICE`` its device, e.g. ``mps``).
``@pytest.mark.backends("numpy")`` limits one test. ``--xpnet-require cupy,torch``
(on the machine meant to test them) turns a skip for a missing backend into a failure.

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

The package, a module a concern: ``plugin.py`` (the option, the fixtures,
the parametrisation), ``compare.py`` (tolerances, and failures that show the
worst elements), ``gradients.py`` (:func:`check_backward`,
:func:`check_model`), ``parity.py`` (:func:`check_parity`). Everything is
importable from ``framework.testing`` itself, which is also the module pytest
loads as the plugin.
"""

from framework.testing.compare import TOLERANCES, assert_allclose_report, tolerances
from framework.testing.gradients import check_backward, check_model
from framework.testing.parity import assert_outputs_close, check_parity
# the plugin's hooks and fixtures, here so that pytest finds them in the module it loads
from framework.testing.plugin import (OPTION, REQUIRE, STANDARD, backend, keep_default_backend,
                                      on_cupy, pytest_addoption, pytest_configure,
                                      pytest_generate_tests, pytest_runtest_makereport,
                                      required_backends, selected_backends, xp)

__all__ = ["TOLERANCES", "tolerances", "assert_allclose_report", "check_backward", "check_model",
           "check_parity", "assert_outputs_close", "OPTION", "REQUIRE", "STANDARD",
           "selected_backends", "required_backends", "backend", "xp", "on_cupy",
           "keep_default_backend", "pytest_addoption", "pytest_configure",
           "pytest_generate_tests", "pytest_runtest_makereport"]
