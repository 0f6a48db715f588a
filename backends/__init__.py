"""The NumPy/CuPy shim: one place that knows which array module is in use.

Compute code never imports ``numpy`` or ``cupy`` by name. It asks
:func:`get_array_module` for the module its inputs live in, so one layer
serves both backends. Code that creates arrays from nothing (parameters,
data) asks :func:`current` for the default backend, chosen by the
environment variable ``XPNET_BACKEND``:

``numpy``
    Always NumPy, on the CPU.
``cupy``
    Always CuPy; a machine without a usable GPU raises ``RuntimeError``
    saying why. It never falls back silently.
``auto`` (the default)
    CuPy when it imports *and* reports a device, NumPy otherwise.

The variable is read when the default is first needed, not at import;
:func:`use` switches the default within a process.

Below the shim: :mod:`backends.arrays` (which library an array is in),
:mod:`backends.ops` (the reference operations), :mod:`backends.dispatch`
(``ops_for``), and one wing per library: :mod:`backends.host` (NumPy: its
threads and compiled C kernels) and :mod:`backends.cuda` (CuPy: fused
kernels, GEMMs, the graph's mechanics). Nothing here imports from above.
"""

import os
import sys

import numpy

from backends.arrays import (check_same_backend, get_array_module, host_rng,  # noqa: F401
                             is_device_array, to_numpy)
from backends.dispatch import ops_for  # noqa: F401
from backends.host.allocator import tune_host_allocator  # noqa: F401

ENV_VAR = "XPNET_BACKEND"
NAMES = ("numpy", "cupy")
CHOICES = ("numpy", "cupy", "auto")

_CUPY_HELP = ("Install CuPy for your CUDA version with pip install 'xpnet[cuda12]' "
              "or pip install 'xpnet[cuda13]', or run on the CPU with XPNET_BACKEND=numpy.")


class Backend:
    """One array backend: its module ``xp`` and how to move data onto it."""

    def __init__(self, name, xp, reason=""):
        self.name = name
        self.xp = xp
        self.reason = reason

    @property
    def device(self):
        """``"CPU"``, or the GPU's name and compute capability."""
        if self.name == "numpy":
            return "CPU"
        dev = self.xp.cuda.Device()
        props = self.xp.cuda.runtime.getDeviceProperties(dev.id)
        gpu = props["name"]
        if isinstance(gpu, bytes):
            gpu = gpu.decode()
        cc = dev.compute_capability
        return f"{gpu} (GPU {dev.id}, compute capability {cc[:-1]}.{cc[-1]})"

    def asarray(self, x, dtype=None):
        """Host (or device) data as an array of this backend."""
        if self.name == "numpy":
            return numpy.asarray(to_numpy(x), dtype=dtype)
        return self.xp.asarray(x, dtype=dtype)

    def synchronize(self):
        """Wait for queued device work; a no-op on the CPU."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def __repr__(self):
        return f"Backend({self.name!r}, device={self.device!r})"

    def __eq__(self, other):
        return isinstance(other, Backend) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


_default = None
_cupy_probe = None  # (module or None, reason string), probed at most once


def _probe_cupy():
    """Import CuPy and check for a device; returns ``(cupy or None, why)``.

    Any exception counts as unusable: CuPy may import fine and then fail on
    first use with ``cudaErrorNoDevice`` or ``cudaErrorInsufficientDriver``.
    """
    global _cupy_probe
    if _cupy_probe is None:
        try:
            import cupy
        except Exception as e:  # ImportError, or a broken CUDA install
            _cupy_probe = (None, f"CuPy is not installed or failed to import "
                                 f"({type(e).__name__}: {e})")
        else:
            try:
                ok = cupy.is_available()
                if ok:
                    cupy.cuda.runtime.getDeviceCount()
                    _cupy_probe = (cupy, "CuPy imported and reports a CUDA device")
                else:
                    _cupy_probe = (None, f"CuPy {cupy.__version__} is installed but "
                                         f"reports no usable CUDA device")
            except Exception as e:
                _cupy_probe = (None, f"CuPy {cupy.__version__} is installed but the GPU "
                                     f"is unusable (driver missing or too old?): "
                                     f"{type(e).__name__}: {e}")
    return _cupy_probe


def _check_name(name, source):
    if not isinstance(name, str) or name.strip().lower() not in CHOICES:
        raise ValueError(f"{source}={name!r} is not a backend; expected one of "
                         f"{', '.join(CHOICES)}")
    return name.strip().lower()


def _make(name, source):
    """Build the :class:`Backend` for a checked name; ``source`` says who asked."""
    if name == "numpy":
        why = "asked for by name" if source else "default"
        return Backend("numpy", numpy, f"{source}=numpy ({why})")
    cupy, why = _probe_cupy()
    if name == "cupy":
        if cupy is None:
            raise RuntimeError(f"{source}=cupy, but the CuPy backend cannot be used: "
                               f"{why}. {_CUPY_HELP}")
        return Backend("cupy", cupy, f"{source}=cupy")
    if cupy is not None:
        return Backend("cupy", cupy, f"{source}=auto: {why}")
    return Backend("numpy", numpy, f"{source}=auto: {why}; using NumPy on the CPU")


def use(name):
    """Set the default backend (``"numpy"``, ``"cupy"`` or ``"auto"``) and return it."""
    global _default
    _default = _make(_check_name(name, "backends.use"), "backends.use")
    return _default


def current():
    """The default :class:`Backend`, resolving ``XPNET_BACKEND`` on first use."""
    global _default
    if _default is None:
        raw = os.environ.get(ENV_VAR, "auto")
        _default = _make(_check_name(raw or "auto", ENV_VAR), ENV_VAR)
    return _default


def reset():
    """Forget the chosen default so the next :func:`current` reads the environment again."""
    global _default
    _default = None


def available():
    """Backend names usable on this machine, e.g. ``["numpy"]`` or ``["numpy", "cupy"]``."""
    names = ["numpy"]
    if _probe_cupy()[0] is not None:
        names.append("cupy")
    return names


def to_device(x, dtype=None):
    """``x`` as an array of the current default backend."""
    return current().asarray(x, dtype=dtype)


def __getattr__(name):
    # ``backends.xp`` follows ``use()``: it is looked up on every access.
    if name == "xp":
        return current().xp
    raise AttributeError(f"module 'backends' has no attribute {name!r}")


def backend_of(x):
    """The :class:`Backend` an array lives on (for data that must follow a network)."""
    if is_device_array(x):
        return Backend("cupy", sys.modules["cupy"], "where the array lives")
    return Backend("numpy", numpy, "where the array lives")
