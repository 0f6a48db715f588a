"""NumPy, on the CPU: the backend of the host wing."""

import numpy

from backends.backend import _MAKING, Backend
from backends.host import build, threads
from backends.host.ops import HostOps


class NumpyBackend(Backend):
    """NumPy's arrays on the CPU, with the host wing's operations (:class:`HostOps`: every
    core, compiled C kernels built into a private cache on first use)."""

    name = "numpy"
    modules = ("numpy",)
    host_buffers = True
    settings_fields = ("host_threads", "host_kernels", "cache_dir")

    def in_host_memory(self):
        return True

    @classmethod
    def _load(cls):
        return numpy

    @classmethod
    def default_device(cls):
        return "cpu"

    @classmethod
    def kernels(cls, settings):
        """``(Kernels or None, why)``: the compiled kernels for ``settings``, built and loaded
        once a process (:func:`backends.host.build.load`)."""
        key = (settings.host_kernels, settings.cache_dir)
        with _MAKING:  # one build and load, whichever threads ask at once
            cache = cls.__dict__.get("_kernels")
            if cache is None:
                cache = cls._kernels = {}
            if key not in cache:
                cache[key] = build.load(settings)
            return cache[key]

    @classmethod
    def _make_ops(cls, settings):
        from backends.registry import REGISTRY
        return HostOps(numpy, threads=threads.host_threads(settings),
                       kernels=lambda: cls.kernels(settings), backend=cls, blas=REGISTRY.blas)

    @classmethod
    def namespace_of(cls, x):
        return numpy

    @classmethod
    def to_numpy(cls, x):
        return numpy.asarray(x)

    @classmethod
    def device_of(cls, x):
        return "cpu"

    @classmethod
    def copy(cls, x):
        return x.copy()

    @classmethod
    def kind(cls, x):
        return "numpy"

    def __init__(self, device="cpu", reason=""):
        super().__init__("cpu" if device is None else device, reason)

    @property
    def description(self):
        return "CPU"

    def asarray(self, x, dtype=None):
        from backends.registry import REGISTRY  # where another library's array goes home
        return numpy.asarray(REGISTRY.to_numpy(x), dtype=dtype)

    def full(self, shape, value, dtype="float32"):
        return numpy.full(shape, value, dtype=dtype)
