"""The array libraries xpnet can run on: how to find each, its devices, and why one is unusable.

One :class:`Library` per name: ``numpy`` (the CPU), ``cupy`` (NVIDIA GPUs),
``torch`` (PyTorch tensors on the CPU, CUDA or ROCm GPUs, or Apple's MPS;
through ``array_api_compat``'s namespace) and ``array_api_strict`` (the
standard's minimal reference, for proving code portable; its devices are
``CPU_DEVICE``, ``device1``, ``device2`` and ones without float64). Each
probe runs at most once a process. ``auto`` means CuPy where it sees a GPU,
else NumPy; it never picks PyTorch by itself.
"""

import platform

import numpy

from backends import launch

INSTALL = {
    "cupy": "pip install 'xpnet[cuda12]' or 'xpnet[cuda13]' (CuPy for your CUDA version)",
    "torch": "pip install 'xpnet[torch]' (PyTorch and array-api-compat)",
    "array_api_strict": "pip install 'xpnet[array-api]' (array-api-strict)",
}
REFUSED = {
    "jax": "JAX's arrays are immutable, and xpnet's layers and optimizers update arrays in "
           "place (params -= lr * grads, batch norm's running averages, dropout's counters)",
}
MIN_TORCH = (2, 1)


class Unusable(RuntimeError):
    """A library or device that cannot be used here; the message says why and what to do.
    ``missing``: the library is not installed (so installing it is the remedy)."""

    def __init__(self, message, missing=False):
        super().__init__(message)
        self.missing = missing


def _launched_gpu(count, library):
    """The GPU a process of a data-parallel job takes (its local rank's), or None for a
    process on its own; :class:`Unusable` where its machine has too few GPUs."""
    job = launch.launched()
    if job is None or job.size == 1:
        return None
    try:
        return launch.gpu_index(job, count, library)
    except ValueError as e:
        raise Unusable(str(e)) from None


class Library:
    """A probe: :meth:`load` gives ``(namespace, why)`` or raises :class:`Unusable`."""

    name = ""

    def __init__(self):
        self._probe = None

    def load(self):
        if self._probe is None:
            try:
                self._probe = (self._load(), None)
            except Unusable as e:  # kept without its traceback
                self._probe = (None, Unusable(str(e), e.missing))
            except Exception as e:  # a broken install fails in its own ways
                self._probe = (None, Unusable(f"{self.name} failed to import "
                                              f"({type(e).__name__}: {e})"))
        namespace, why = self._probe
        if namespace is None:
            raise Unusable(str(why), why.missing)
        return namespace

    def usable(self):
        try:
            self.load()
        except Unusable as e:
            return False, str(e)
        return True, self.describe_devices()

    def devices(self):
        """Names of the devices it offers here."""
        return ["cpu"]

    def describe_devices(self):
        return "devices: " + ", ".join(self.devices())

    def device(self, value):
        """The namespace's device object for ``value`` (a name, None for the default, or
        the namespace's own device object); :class:`Unusable` naming what exists."""
        if value is None or str(value).lower() in self.devices():
            return "cpu"
        raise Unusable(self._no_device(value))

    def _no_device(self, value):
        return (f"{self.name} has no device {value!r} here; it has: "
                f"{', '.join(self.devices())}")


class NumpyLibrary(Library):
    name = "numpy"

    def _load(self):
        return numpy


class CupyLibrary(Library):
    name = "cupy"

    def _load(self):
        try:
            import cupy
        except Exception as e:  # ImportError, or a broken CUDA install
            raise Unusable(f"CuPy is not installed or failed to import "
                           f"({type(e).__name__}: {e})", missing=True) from None
        try:
            ok = cupy.is_available()
            if ok:
                cupy.cuda.runtime.getDeviceCount()
        except Exception as e:
            raise Unusable(f"CuPy {cupy.__version__} is installed but the GPU is unusable "
                           f"(driver missing or too old?): {type(e).__name__}: {e}") from None
        if not ok:
            raise Unusable(f"CuPy {cupy.__version__} is installed but reports no usable CUDA "
                           f"device")
        return cupy

    def devices(self):
        cupy = self.load()
        return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]

    def device(self, value):
        cupy = self.load()
        if value is None:
            index = _launched_gpu(cupy.cuda.runtime.getDeviceCount(), "CuPy")
            if index is None:
                return cupy.cuda.Device()
            # a data-parallel job: this process's GPU is its local rank's, made current
            # for the process (CuPy launches on the current device), as DDP users do
            device = cupy.cuda.Device(index)
            device.use()
            return device
        if isinstance(value, cupy.cuda.Device):
            return value
        text = str(value).lower()
        index = 0 if text == "cuda" else text.split(":", 1)[1] if text.startswith("cuda:") \
            else None
        if index is None or not str(index).isdigit() or f"cuda:{index}" not in self.devices():
            raise Unusable(self._no_device(value))
        return cupy.cuda.Device(int(index))


class TorchLibrary(Library):
    name = "torch"

    def _load(self):
        try:
            import torch
        except ImportError:
            raise Unusable(f"PyTorch is not installed; {INSTALL['torch']}") from None
        version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
        if version < MIN_TORCH:
            raise Unusable(f"PyTorch {torch.__version__} is too old: xpnet needs "
                           f"{'.'.join(map(str, MIN_TORCH))} or newer ({INSTALL['torch']})")
        try:
            from array_api_compat import torch as namespace
        except ImportError:
            raise Unusable(f"array-api-compat is not installed, which PyTorch needs for the "
                           f"Array API; {INSTALL['torch']}") from None
        return namespace

    def devices(self):
        import torch
        names = ["cpu"]
        if torch.cuda.is_available():
            names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            names.append("mps")
        return names

    def default(self):
        """CUDA (or ROCm) where PyTorch sees a GPU, else Apple's MPS, else the CPU; in a
        data-parallel job, the GPU of the process's local rank."""
        names = self.devices()
        if "cuda" not in names:
            return "mps" if "mps" in names else "cpu"
        import torch
        index = _launched_gpu(torch.cuda.device_count(), "PyTorch")
        return "cuda" if index is None else f"cuda:{index}"

    def device(self, value):
        import torch
        self.load()
        if isinstance(value, torch.device):
            value = str(value)
        name = self.default() if value is None else str(value).lower()
        if name not in self.devices():
            why = ""
            if name == "mps" and platform.system() != "Darwin":
                why = " (MPS is Apple silicon's GPU: macOS only)"
            raise Unusable(self._no_device(value) + why)
        return torch.device(name)


class StrictLibrary(Library):
    name = "array_api_strict"

    def _load(self):
        try:
            import array_api_strict
        except ImportError:
            raise Unusable(f"array-api-strict is not installed; "
                           f"{INSTALL['array_api_strict']}") from None
        return array_api_strict

    def _info(self):
        return self.load().__array_namespace_info__()

    def devices(self):
        return [str(getattr(d, "_device", d)) for d in self._info().devices()]

    def device(self, value):
        strict = self.load()
        if value is None:
            return self._info().default_device()
        if isinstance(value, strict.Device):
            return value
        for device in self._info().devices():
            if str(getattr(device, "_device", device)) == str(value):
                return device
        raise Unusable(self._no_device(value))


LIBRARIES = {lib.name: lib for lib in (NumpyLibrary(), CupyLibrary(), TorchLibrary(),
                                       StrictLibrary())}
NAMES = tuple(LIBRARIES)


def has_float64(namespace, device):
    """Whether ``device`` of ``namespace`` computes in float64 (Apple's MPS does not)."""
    info = getattr(namespace, "__array_namespace_info__", None)
    if info is None:
        return True
    try:
        return "float64" in info().dtypes(device=device, kind="real floating")
    except Exception:
        return True
