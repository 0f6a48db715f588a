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

The variables are read when the default is first needed, not at import;
:func:`use` switches the default within a process. A bad value is an error
naming it, what exists and how to install what is missing.

Below the shim: :mod:`backends.arrays` (which namespace an array is in),
:mod:`backends.namespaces` (the libraries and their devices),
:mod:`backends.ops` (the reference operations, on the standard alone),
:mod:`backends.dispatch` (``ops_for``), and a wing for each library with
fast paths: :mod:`backends.host` (NumPy: its threads and compiled C
kernels) and :mod:`backends.cuda` (CuPy: fused kernels, GEMMs, the graph's
mechanics). Nothing here imports from above.
"""

import os
import sys

import numpy

from backends import namespaces
from backends.arrays import (array_namespace, check_same_backend, copy, device_of,  # noqa: F401
                             dtype_kind, dtype_name, get_array_module, host_rng, is_array,
                             is_cupy_array, is_device_array, on_device_of, size, to_numpy)
from backends.dispatch import ops_for  # noqa: F401
from backends.host.allocator import large_blocks_from_heap, tune_host_allocator  # noqa: F401
from backends.host.threads import cpu_share  # noqa: F401

ENV_VAR = "XPNET_BACKEND"
DEVICE_ENV_VAR = "XPNET_DEVICE"
NAMES = namespaces.NAMES
CHOICES = NAMES + ("auto",)


class Backend:
    """One array backend: its name, its namespace ``xp``, its ``device``, and how to move
    data onto it."""

    def __init__(self, name, xp, reason="", device=None):
        self.name = name
        self.xp = xp
        self.reason = reason
        self.device = "cpu" if device is None and name == "numpy" else device

    @property
    def description(self):
        """In words: ``"CPU"``, the GPU's name and compute capability, or the device."""
        if self.name == "numpy":
            return "CPU"
        if self.name == "cupy":
            dev = self.device if self.device is not None else self.xp.cuda.Device()
            props = self.xp.cuda.runtime.getDeviceProperties(dev.id)
            gpu = props["name"]
            if isinstance(gpu, bytes):
                gpu = gpu.decode()
            cc = dev.compute_capability
            return f"{gpu} (GPU {dev.id}, compute capability {cc[:-1]}.{cc[-1]})"
        return f"{self.name} on {self.device}"

    def dtype(self, dtype):
        """The namespace's dtype for a name (``"float32"``), a NumPy dtype or any library's."""
        if dtype is None:
            return None
        name = dtype if isinstance(dtype, str) else \
            numpy.dtype(dtype).name if isinstance(dtype, type) else dtype_name(dtype)
        if self.name in ("numpy", "cupy"):
            return numpy.dtype(name)
        if name == "float64" and not namespaces.has_float64(self.xp, self.device):
            raise TypeError(f"{self.description} has no float64 (Apple's MPS computes in "
                            f"float32): train in float32 here, and run float64 checks such "
                            f"as gradient_check on the CPU (XPNET_DEVICE=cpu)")
        return getattr(self.xp, name)

    def asarray(self, x, dtype=None):
        """Host (or device) data as an array of this backend, on its device."""
        if self.name == "numpy":
            return numpy.asarray(to_numpy(x), dtype=dtype)
        if self.name == "cupy":
            if self.device is None:
                return self.xp.asarray(x, dtype=dtype)
            with self.device:
                return self.xp.asarray(x, dtype=dtype)
        if not is_array(x):
            x = numpy.asarray(x)  # Python numbers and lists: NumPy's dtypes on every backend
        elif array_namespace(x) is not self.xp:
            x = to_numpy(x)  # from another library: through the host
        if isinstance(x, numpy.ndarray) and dtype is None and x.dtype == numpy.float64 \
                and not namespaces.has_float64(self.xp, self.device):
            dtype = "float32"
        return self.xp.asarray(x, dtype=self.dtype(dtype), device=self.device)

    def full(self, shape, value, dtype="float32"):
        """A new array of ``shape`` filled with ``value``, on this backend's device."""
        if self.name == "numpy":
            return numpy.full(shape, value, dtype=dtype)
        if self.name == "cupy":
            if self.device is None:
                return self.xp.full(shape, value, dtype=self.dtype(dtype))
            with self.device:
                return self.xp.full(shape, value, dtype=self.dtype(dtype))
        return self.xp.full(shape, value, dtype=self.dtype(dtype), device=self.device)

    def synchronize(self):
        """Wait for queued device work; a no-op on the CPU."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()
        elif self.name == "torch":
            import torch
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            elif self.device.type == "mps":
                torch.mps.synchronize()

    def __repr__(self):
        return f"Backend({self.name!r}, device={self.device!r})"

    def __eq__(self, other):
        return isinstance(other, Backend) and (other.name, str(other.device)) == \
            (self.name, str(self.device))

    def __hash__(self):
        return hash((self.name, str(self.device)))


_default = None


def _probe_cupy():
    """``(cupy or None, why)``: whether CuPy imports and sees a device."""
    try:
        return namespaces.LIBRARIES["cupy"].load(), "CuPy imported and reports a CUDA device"
    except namespaces.Unusable as e:
        return None, str(e)


def _check_name(name, source):
    text = name.strip().lower() if isinstance(name, str) else name
    if text in namespaces.REFUSED:
        raise ValueError(f"{source}={name!r}: {namespaces.REFUSED[text]}, so it cannot be a "
                         f"backend; expected one of {', '.join(CHOICES)}")
    if text not in CHOICES:
        raise ValueError(f"{source}={name!r} is not a backend; expected one of "
                         f"{', '.join(CHOICES)} (python -m backends lists what is usable here)")
    return text


def _make(name, source, device=None, device_source=DEVICE_ENV_VAR):
    """The :class:`Backend` for a checked name; ``source`` says who asked."""
    if name == "auto" and device is not None:
        raise ValueError(f"{device_source}={device!r} needs a backend: name one of "
                         f"{', '.join(NAMES)} (auto picks its own device)")
    if name == "auto":
        cupy, why = _probe_cupy()
        if cupy is not None:
            try:
                where = namespaces.LIBRARIES["cupy"].device(None)
            except namespaces.Unusable as e:
                raise RuntimeError(f"{source}=auto chose CuPy: {e}") from None
            return Backend("cupy", cupy, f"{source}=auto: {why}", where)
        return Backend("numpy", numpy, f"{source}=auto: {why}; using NumPy on the CPU")
    library = namespaces.LIBRARIES[name]
    try:
        xp = library.load()
    except namespaces.Unusable as e:
        install = namespaces.INSTALL.get(name, "")
        # installing is the remedy only where the library is missing (not a GPU or driver)
        hint = f"; to install it: {install}" if e.missing and install and \
            "pip install" not in str(e) else ""
        raise RuntimeError(f"{source}={name}, but that backend cannot be used: {e}{hint}; or "
                           f"run on the CPU with {ENV_VAR}=numpy") from None
    try:
        where = library.device(device)
    except namespaces.Unusable as e:
        raise RuntimeError(f"{source}={name} with {device_source}={device!r}: {e}") from None
    why = "asked for by name" if source else "default"
    # CuPy's default is the device current now, named, so that it equals backend_of(x)
    return Backend(name, xp, f"{source}={name} ({why})", where)


def use(name, device=None):
    """Set the default backend and return it: ``"numpy"``, ``"cupy"``, ``"torch"``,
    ``"array_api_strict"`` or ``"auto"``; ``device`` a name (``"cuda:1"``, ``"mps"``,
    ``"device1"``) or the namespace's own device object, None for its default."""
    global _default
    _default = _make(_check_name(name, "backends.use"), "backends.use", device, "device")
    return _default


def chosen(name=None, device=None):
    """The backend a command line asks for (a script's ``--backend`` and ``--device``):
    each where given, over ``XPNET_BACKEND`` and ``XPNET_DEVICE``; the default
    (:func:`current`) where neither is."""
    if name is None and device is None:
        return current()
    return use(name or os.environ.get(ENV_VAR) or "auto", device=device)


def current():
    """The default :class:`Backend`, resolving ``XPNET_BACKEND`` and ``XPNET_DEVICE`` on
    first use."""
    global _default
    if _default is None:
        raw = os.environ.get(ENV_VAR, "auto")
        device = os.environ.get(DEVICE_ENV_VAR) or None
        name = _check_name(raw or "auto", ENV_VAR)
        if device is not None and name == "auto":
            raise ValueError(f"{DEVICE_ENV_VAR}={device!r} needs a backend: set {ENV_VAR} to "
                             f"one of {', '.join(NAMES)}")
        _default = _make(name, ENV_VAR, device)
    return _default


def reset():
    """Forget the chosen default so the next :func:`current` reads the environment again."""
    global _default
    _default = None


def available():
    """Backend names usable on this machine, e.g. ``["numpy", "array_api_strict"]``."""
    return [name for name, lib in namespaces.LIBRARIES.items() if lib.usable()[0]]


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
    if type(x) is numpy.ndarray or not is_array(x):
        return Backend("numpy", numpy, "where the array lives")
    if is_cupy_array(x):
        return Backend("cupy", sys.modules["cupy"], "where the array lives", x.device)
    xp = array_namespace(x)
    name = "torch" if type(x).__module__.startswith("torch") else \
        "array_api_strict" if type(x).__module__.startswith("array_api_strict") else \
        getattr(xp, "__name__", type(x).__module__)
    return Backend(name, xp, "where the array lives", device_of(x))
