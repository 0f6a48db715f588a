"""PyTorch's tensors: the hooks PyTorch needs beside the standard, and its wing of operations."""

import platform

from backends import mpi_env
from backends.arrays import NARROW_FLOATS, dtype_name
from backends.backend import Unusable
from backends.standard import StandardBackend

MIN_TORCH = (2, 1)


class TorchBackend(StandardBackend):
    """PyTorch's tensors on the CPU, CUDA or ROCm GPUs, or Apple's MPS, computed on through
    ``array_api_compat``'s torch namespace, the layers' hot operations on PyTorch's own
    functions (:mod:`backends.torch.ops`; with ``backends.configured(fast_paths=False)``,
    the standard's). By default CUDA (or ROCm) where PyTorch sees a
    GPU, else MPS, else the CPU; in a data-parallel job the GPU of the process's local
    rank."""

    name = "torch"
    modules = ("torch",)
    install = "pip install 'xpnet[torch]' (PyTorch and array-api-compat)"

    @classmethod
    def _load(cls):
        try:
            import torch
        except ImportError:
            raise Unusable(f"PyTorch is not installed; {cls.install}", missing=True) from None
        version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
        if version < MIN_TORCH:
            raise Unusable(f"PyTorch {torch.__version__} is too old: xpnet needs "
                           f"{'.'.join(map(str, MIN_TORCH))} or newer ({cls.install})")
        try:
            from array_api_compat import torch as namespace
        except ImportError:
            raise Unusable(f"array-api-compat is not installed, which PyTorch needs for the "
                           f"Array API; {cls.install}", missing=True) from None
        return namespace

    @classmethod
    def _make_ops(cls, settings):
        """The torch wing (:mod:`backends.torch.ops`): PyTorch's own functions."""
        from backends.torch.ops import TorchOps
        return TorchOps(cls.load(), cls)

    @classmethod
    def version(cls):
        import torch
        return torch.__version__

    @classmethod
    def namespace_of(cls, x):
        return cls.load()

    @classmethod
    def devices(cls):
        import torch
        names = ["cpu"]
        if torch.cuda.is_available():
            names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            names.append("mps")
        return names

    @classmethod
    def default_device(cls):
        import torch
        names = cls.devices()
        if "cuda" not in names:
            return torch.device("mps" if "mps" in names else "cpu")
        try:
            index = mpi_env.launched_gpu(torch.cuda.device_count(), "PyTorch")
        except ValueError as e:
            raise Unusable(str(e)) from None
        return torch.device("cuda" if index is None else f"cuda:{index}")

    @classmethod
    def parse_device(cls, value):
        import torch
        cls.load()
        if value is None:
            return cls.default_device()
        if isinstance(value, torch.device):
            value = str(value)
        name = str(value).lower()
        try:  # PyTorch's own spellings of the one CPU or MPS device: "cpu:0", "mps:0"
            parsed = torch.device(name)
        except (RuntimeError, TypeError):
            parsed = None
        if parsed is not None and parsed.type in ("cpu", "mps") and parsed.index in (None, 0):
            name = parsed.type
        if name not in cls.devices():
            why = ""
            if name == "mps" and platform.system() != "Darwin":
                why = " (MPS is Apple silicon's GPU: macOS only)"
            elif name.startswith("cuda") and not torch.cuda.is_available():
                why = (f" (this PyTorch, {torch.__version__}, sees no GPU: "
                       f"torch.cuda.is_available() is False; a CPU-only build, or no driver)")
            raise Unusable(cls._no_device(value) + why)
        return torch.device(name)

    @classmethod
    def to_numpy(cls, x):
        x = x.detach().cpu()
        if dtype_name(x.dtype).startswith(NARROW_FLOATS):  # bfloat16, float8: NumPy has none
            x = x.float()  # as float32, the same values
        return x.numpy()

    def asarray(self, x, dtype=None):
        """As the standard's, detached: xpnet computes its own gradients, and a tensor that
        requires PyTorch's (data out of a model of the user's own) would make every result
        record a graph for autograd, one that grew with each step through the parameters."""
        if getattr(x, "requires_grad", False):
            x = x.detach()
        return super().asarray(x, dtype)

    @classmethod
    def is_device_array(cls, x):
        return x.device.type != "cpu"

    @classmethod
    def out_of_memory(cls, error):
        """PyTorch's ``OutOfMemoryError`` (CUDA, ROCm), and the ``RuntimeError`` its CPU and
        MPS allocators raise ("DefaultCPUAllocator: can't allocate memory", "MPS backend
        out of memory")."""
        if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
            return True
        text = str(error) if isinstance(error, RuntimeError) else ""
        return "can't allocate memory" in text or "out of memory" in text

    def graph_runtime(self):
        """PyTorch's CUDA graphs (:mod:`backends.torch.graph`) on a CUDA or ROCm device;
        None on the CPU and MPS."""
        if self.device.type != "cuda":
            return None
        from backends.torch import graph
        return graph

    def in_host_memory(self):
        return self.device.type == "cpu"

    def synchronize(self):
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def memory(self):
        """Bytes PyTorch's caching allocator holds on a GPU (``{}`` on the CPU)."""
        import torch
        if self.device.type == "cuda":
            return {"allocated": torch.cuda.memory_allocated(self.device),
                    "reserved": torch.cuda.memory_reserved(self.device)}
        return {}
