"""CuPy, on NVIDIA GPUs: the backend of the CUDA wing."""

import contextlib
import sys

import numpy  # host-side: data on its way to the device

from backends import mpi_env
from backends.arrays import extension_float, native_order
from backends.backend import Backend, Unusable


class CupyBackend(Backend):
    """CuPy's arrays on one NVIDIA GPU, with the CUDA wing's operations (fused kernels, the
    CUDA graph's products). Its arrays compute with array-api-compat's CuPy namespace
    where installed (the cuda extras bring it), for CuPy versions that lack some of the
    standard's names, else with CuPy itself. It holds, for the process, the cuBLAS handles
    of our own that a CUDA graph may record (:meth:`cublas_handle`)."""

    name = "cupy"
    modules = ("cupy", "cupyx")
    install = "pip install 'xpnet[cuda12]' or 'xpnet[cuda13]' (CuPy for your CUDA version)"
    settings_fields = ("fused", "graph_gemm")

    @classmethod
    def _load(cls):
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

    @classmethod
    def devices(cls):
        cupy = cls.load()
        return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]

    @classmethod
    def default_device(cls):
        """The current device; in a data-parallel job the GPU of the process's local rank,
        made current for the process (CuPy launches on the current device), as DDP users
        do with ``torch.cuda.set_device``."""
        cupy = cls.load()
        try:
            index = mpi_env.launched_gpu(cupy.cuda.runtime.getDeviceCount(), "CuPy")
        except ValueError as e:
            raise Unusable(str(e)) from None
        if index is None:
            return cupy.cuda.Device()
        device = cupy.cuda.Device(index)
        device.use()
        return device

    @classmethod
    def parse_device(cls, value):
        cupy = cls.load()
        if value is None:
            return cls.default_device()
        if isinstance(value, cupy.cuda.Device):
            return value
        text = str(value).lower()
        index = 0 if text == "cuda" else text.split(":", 1)[1] if text.startswith("cuda:") \
            else None
        if index is None or not str(index).isdigit() or f"cuda:{index}" not in cls.devices():
            raise Unusable(cls._no_device(value))
        return cupy.cuda.Device(int(index))

    @classmethod
    def namespace_of(cls, x=None):
        standard = cls.__dict__.get("_standard")
        if standard is None:
            try:
                from array_api_compat import cupy as standard
            except ImportError:
                standard = sys.modules["cupy"]
            cls._standard = standard
        return standard

    @classmethod
    def _make_ops(cls, settings):
        from backends.cuda.ops import CupyOps
        return CupyOps(fused=settings.fused, graph_gemm=settings.graph_gemm,
                       handle=cls.cublas_handle, backend=cls)

    @classmethod
    def _reference_ops(cls):
        from backends.ops import StandardOps
        return StandardOps(cls.namespace_of(), cls)

    @classmethod
    def cublas_handle(cls):
        """``(handle, None)`` for the current device's cuBLAS handle of ours, made on first
        use, or ``(None, why)`` where none can be made (asked once a device)."""
        from backends.cuda import cublas
        cupy = cls.load()
        handles = cls.__dict__.get("_handles")
        if handles is None:
            handles = cls._handles = {}
        device = cupy.cuda.Device().id
        if device not in handles:
            try:
                handles[device] = (cublas.Handle(), None)
            except (OSError, AttributeError, RuntimeError) as e:  # no library, symbol, handle
                handles[device] = (None, f"{type(e).__name__}: {e}")
        return handles[device]

    @classmethod
    def to_numpy(cls, x):
        return x.get()

    @classmethod
    def is_device_array(cls, x):
        return True

    @classmethod
    def copy(cls, x):
        return x.copy()

    @classmethod
    def kind(cls, x):
        return "cupy"

    def __init__(self, device=None, reason=""):
        super().__init__(device, reason)

    @property
    def description(self):
        dev = self.device if self.device is not None else self.xp.cuda.Device()
        props = self.xp.cuda.runtime.getDeviceProperties(dev.id)
        gpu = props["name"]
        if isinstance(gpu, bytes):
            gpu = gpu.decode()
        cc = dev.compute_capability
        return f"{gpu} (GPU {dev.id}, compute capability {cc[:-1]}.{cc[-1]})"

    def asarray(self, x, dtype=None):
        x = native_order(x)  # CuPy takes no big-endian host array
        if extension_float(x):  # nor ml_dtypes' bfloat16 or float8 (JAX's host arrays)
            x = x.astype(numpy.float32)  # the same values; CuPy has no bfloat16
        if self.device is None:
            return self.xp.asarray(x, dtype=dtype)
        with self.device:
            return self.xp.asarray(x, dtype=dtype)

    def full(self, shape, value, dtype="float32"):
        if self.device is None:
            return self.xp.full(shape, value, dtype=self.dtype(dtype))
        with self.device:
            return self.xp.full(shape, value, dtype=self.dtype(dtype))

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()

    def graph_runtime(self):
        """CuPy's CUDA graphs: :mod:`backends.cuda.graph`."""
        from backends.cuda import graph
        return graph

    def memory(self):
        """Bytes in CuPy's default memory pool (the data, any eager step's blocks) and in
        the scratch pool (:meth:`scratch`: blocks of passing work still in use); a
        recorded step's graph holds a pool of its own."""
        pool = self._scratch_pools().get(self._device_id())
        return {"default": self.xp.get_default_memory_pool().total_bytes(),
                "scratch": 0 if pool is None else pool.total_bytes()}

    @classmethod
    def _scratch_pools(cls):
        pools = cls.__dict__.get("_scratch")
        if pools is None:
            pools = cls._scratch = {}
        return pools

    def _device_id(self):
        return self.xp.cuda.Device().id if self.device is None else self.device.id

    @contextlib.contextmanager
    def scratch(self):
        """CuPy allocates from a memory pool of ours (one a device, for the process) while
        the context lasts; on leaving, the pool's cached blocks are freed, so that a
        Trainer's trial of eager steps and its evaluations do not stay cached in CuPy's
        default pool, which is the user's. Blocks of arrays still alive stay theirs."""
        cupy = self.xp
        pools = self._scratch_pools()
        device = self._device_id()
        pool = pools.get(device)
        if pool is None:
            pool = pools[device] = cupy.cuda.MemoryPool()
        device_scope = contextlib.nullcontext() if self.device is None else self.device
        with device_scope, cupy.cuda.using_allocator(pool.malloc):
            try:
                yield
            finally:
                pool.free_all_blocks()
