"""The shim: one place that knows which array library and device are in use.

Compute code never imports ``numpy``, ``cupy`` or ``torch`` by name. It asks
:func:`get_array_module` for the namespace its inputs live in, so one layer
serves every backend. Code that creates arrays from nothing (parameters,
data) asks :func:`current` for the default backend, chosen by the
environment variables ``XPNET_BACKEND`` and ``XPNET_DEVICE``:

``numpy``
    NumPy, on the CPU.
``cupy``
    CuPy on an NVIDIA GPU; a machine without a usable one raises
    ``RuntimeError`` saying why. It never falls back silently.
``torch``
    PyTorch tensors, through ``array_api_compat``: ``XPNET_DEVICE=cpu``,
    ``cuda`` (or ``cuda:1``; ROCm builds too) or ``mps``; by default CUDA if
    PyTorch sees it, else MPS, else the CPU.
``array_api_strict``
    The Array API standard's minimal implementation, to prove code portable
    (``XPNET_DEVICE=device1`` picks its second device).
``auto`` (the default)
    CuPy when it imports *and* reports a device, NumPy otherwise.

The settings (every ``XPNET_*`` variable, :mod:`backends.settings`) are read once,
when first needed; :func:`use` switches the default within a process, and
:func:`using` and :func:`configured` change the default or the settings for a block
and give them back. A bad value is an error naming it, what exists and how to install
what is missing.

Below the shim: :mod:`backends.backend` (what a backend is: one class per library),
:mod:`backends.registry` (the backends by name and by array type, and the process's
settings and default), :mod:`backends.settings`, :mod:`backends.ops` (the operations'
contract, the standard's reference and the strided family), :mod:`backends.dispatch`
(``ops_for``, resolved once per call chain), :mod:`backends.arrays` (what any array
says of itself), and a wing for each library with fast paths: :mod:`backends.host`
(NumPy: its threads and compiled C kernels), :mod:`backends.cuda` (CuPy: fused
kernels, GEMMs, the graph's mechanics); :mod:`backends.standard`, with
:mod:`backends.torch` and :mod:`backends.strict`, for the libraries reached through
the standard. Nothing here imports from above.
"""

from backends.arrays import (dtype_kind, dtype_name, host_numbers, host_rng, is_array,  # noqa: F401
                             on_device_of, size)
from backends.backend import Backend, Unusable  # noqa: F401
from backends.dispatch import ops_for  # noqa: F401
from backends.host.threads import cpu_share as _cpu_share
from backends.registry import DEVICE_ENV_VAR, ENV_VAR, REGISTRY
from backends import namespaces  # noqa: F401  (``backends.namespaces``, the old path, as before)


__all__ = ["Backend", "Unusable", "NAMES", "CHOICES", "ENV_VAR", "DEVICE_ENV_VAR", "use", "using",
           "kept", "current", "chosen", "reset", "available", "backend_class", "register", "unregister", "configured",
           "settings", "backend_of", "array_namespace", "get_array_module", "to_numpy",
           "to_device", "device_of", "is_array", "is_device_array", "is_cupy_array",
           "check_same_backend", "copy", "out_of_memory", "ops_for", "size", "dtype_name", "dtype_kind",
           "on_device_of", "host_rng", "tune_host_allocator", "large_blocks_from_heap",
           "host_allocator_for_training",
           "cpu_share"]

# The registry's methods, as the module's functions (bound: no extra call on hot paths).
use = REGISTRY.use
using = REGISTRY.using
kept = REGISTRY.kept
current = REGISTRY.current
chosen = REGISTRY.chosen
reset = REGISTRY.reset
available = REGISTRY.available
backend_class = REGISTRY.backend_class
register = REGISTRY.register
unregister = REGISTRY.unregister
configured = REGISTRY.configured
backend_of = REGISTRY.backend_of
array_namespace = REGISTRY.namespace
get_array_module = array_namespace  # the name CuPy's users know
to_numpy = REGISTRY.to_numpy
device_of = REGISTRY.device_of
is_device_array = REGISTRY.is_device_array
is_cupy_array = REGISTRY.is_cupy_array
check_same_backend = REGISTRY.check_same_backend
copy = REGISTRY.copy
out_of_memory = REGISTRY.out_of_memory
tune_host_allocator = REGISTRY.allocator.tune
large_blocks_from_heap = REGISTRY.allocator.large_blocks_from_heap
host_allocator_for_training = REGISTRY.allocator.for_training


def settings():
    """The :class:`backends.settings.Settings` in force (read from the environment once)."""
    return REGISTRY.settings


def cpu_share():
    """Around a data-parallel run: NumPy's BLAS and OpenMP held to this process's share of
    the machine's cores, given back after (:func:`backends.host.threads.cpu_share`)."""
    return _cpu_share(REGISTRY.settings)


def to_device(x, dtype=None):
    """``x`` as an array of the current default backend: an array of any library, or host
    data NumPy reads as numbers (Python numbers, nested lists, buffers); ``ValueError`` for
    host data that holds no numbers (``None``, text, dates, Python objects) or complex
    numbers asked for as real ones (:func:`backends.arrays.host_numbers`)."""
    return current().asarray(host_numbers("to_device", x, dtype), dtype=dtype)


def __getattr__(name):
    # ``backends.xp`` follows ``use()``, and ``NAMES`` (the backends' names) and ``CHOICES``
    # (those and ``auto``) the registry: looked up on every access.
    if name == "xp":
        return current().xp
    if name == "NAMES":
        return REGISTRY.names
    if name == "CHOICES":
        return REGISTRY.names + ("auto",)
    raise AttributeError(f"module 'backends' has no attribute {name!r}")
