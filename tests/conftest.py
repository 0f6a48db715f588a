"""The tests' shared set-up. The fixtures (``backend``, ``xp``, ``on_cupy``) come
from xpnet's pytest plugin, :mod:`framework.testing`: installed with the
package, and named here as well so the tests also run from a bare source tree
(``PYTHONPATH=. python -m pytest``), as on the GPU machine."""

import faulthandler
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# JAX as its users run xpnet on it: with 64-bit numbers (float64 checks, dropout's uint64
# generator), read when JAX is imported; tests/backends/jax/ runs it without (float32, the
# generator in 32-bit words), in a process of its own
os.environ.setdefault("JAX_ENABLE_X64", "1")

import backends  # noqa: E402
from backends import mpi_env  # noqa: E402
import pytest  # noqa: E402

pytest_plugins = ["framework.testing"]

try:  # the property tests' budgets: small in CI, --hypothesis-profile=thorough for more
    from hypothesis import settings
except ImportError:
    pass
else:
    # ci: the same examples every run (no flaky CI); thorough: fresh random ones
    settings.register_profile("ci", max_examples=25, deadline=None, print_blob=True,
                              derandomize=True)
    settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True)

    def pytest_configure(config):
        # here, not at import: Hypothesis reads --hypothesis-profile before this conftest
        # loads, and the module-level default would override it
        settings.load_profile(config.getoption("hypothesis_profile", None) or "ci")


# A test that hangs (a deadlock in the host's thread pool, a collective no rank answers)
# ends the run after --test-time-limit seconds with every thread's traceback, the test's
# frame among them, instead of holding CI until its own limit. The standard library's
# faulthandler, whose watchdog needs no GIL; pytest's faulthandler_timeout prints the same
# but runs on. Under pytest-xdist (make test) it ends the worker: xdist fails that test
# ("crashed while running"), starts another worker and runs the rest.
_watchdog = {"limit": 0.0, "fd": None}


def pytest_addoption(parser):
    parser.addoption("--test-time-limit", type=float, default=600.0, metavar="SECONDS",
                     help="end the run, with every thread's traceback, when one test (its "
                          "set-up and tear-down with it) runs longer (default: 600; 0: never)")


def pytest_sessionstart(session):
    _watchdog["limit"] = session.config.getoption("test_time_limit")
    _watchdog["fd"] = os.dup(2)  # the terminal's: inside a test, fd 2 is pytest's capture


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _watchdog["limit"] > 0:
        faulthandler.dump_traceback_later(_watchdog["limit"], exit=True, file=_watchdog["fd"])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def sigint_heard():
    """SIGINT as Python sets it at a terminal, for the test's length: a run started as a
    shell's background job (some CI runners) inherits it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def sigint_as_at_a_terminal():
    """``preexec_fn`` for a child the tests interrupt: SIGINT at its default. A shell's
    background job (a CI runner's, say) starts ignoring SIGINT, its children inherit
    that, and xpnet, like Python, leaves an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def child_env(**extra):
    """The environment for a child process the tests start, under ``mpiexec`` or not:
    no launcher's variables (which would make it a rank of this process's job), the
    tree first on PYTHONPATH and what else it held (packages unpacked beside the tree,
    as on the GPU machine) kept, made absolute, since children start in folders of
    their own; then ``extra``."""
    env = mpi_env.outside_launcher()
    inherited = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                 if p]
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *inherited])
    env.update(extra)
    return env


def as_another_user(imports, body, *args):
    """Run ``body`` (Python, after ``imports``) in a child process as a user who is not
    root: root reads and writes anything, so as root the child becomes nobody (uid 65534)
    once ``imports`` ran (root's Python and the tree are read first). What it sees must be
    reachable by nobody: a folder under /tmp, not pytest's own (root's alone). Returns the
    finished process (``sys.argv[1:]`` are ``args``)."""
    import subprocess
    code = (f"import os, sys\n{imports}\n"
            f"if os.getuid() == 0:\n"
            f"    os.setgid(65534); os.setuid(65534)\n{body}\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))


def to_host(x):
    return backends.to_numpy(x)


def one_hot(t, classes):
    """One-hot rows of the labels ``t``, on the current backend (the standard has no
    fancy indexing to build them with)."""
    return backends.to_device(__import__("numpy").eye(classes)[to_host(t)])
