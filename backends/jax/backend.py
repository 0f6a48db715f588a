"""JAX's arrays through the Array API standard: the hooks JAX needs beside it."""

import contextlib

from backends import mpi_env
from backends.backend import Unusable
from backends.standard import StandardBackend

# the types a host array is cast between on the host before it is sent (the same values as
# XLA's casts: exact, or rounded to nearest); others (bfloat16, float16) are cast by XLA
HOST_CASTS = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                        "uint64", "float32", "float64"})
MIN_JAX = (0, 4, 32)  # jax.numpy speaks the standard (2023.12 and on) with device= everywhere


class JaxBackend(StandardBackend):
    """JAX's arrays on one of its devices (``cpu``, ``gpu`` or ``cuda:N``, ``tpu``),
    computed on through ``jax.numpy``, which is an Array API namespace. Its arrays are
    immutable (:attr:`mutable`): every write makes a new array. float64 needs
    ``JAX_ENABLE_X64=1`` (JAX would otherwise cast to float32 without a word): without
    it, asking for float64 is an error that says so, and xpnet trains in float32."""

    name = "jax"
    modules = ("jax", "jaxlib")
    install = "pip install 'xpnet[jax]' (JAX for the CPU; for GPUs and TPUs see JAX's " \
              "installation guide: pip install 'jax[cuda12]', 'jax[tpu]')"
    mutable = False

    @classmethod
    def _load(cls):
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            raise Unusable(f"JAX is not installed; {cls.install}", missing=True) from None
        version = tuple(int(p) for p in jax.__version__.split(".")[:3] if p.isdigit())
        if version < MIN_JAX:
            raise Unusable(f"JAX {jax.__version__} is too old: xpnet needs "
                           f"{'.'.join(map(str, MIN_JAX))} or newer ({cls.install})")
        return jnp

    @classmethod
    def version(cls):
        import jax
        return jax.__version__

    @classmethod
    def usable(cls):
        """The devices, and where ``jax_enable_x64`` is off what that leaves out (float64,
        the gradient check's default): a user learns it from ``python -m backends`` before
        a network refuses it."""
        usable, why = super().usable()
        if usable and not cls._jax().config.jax_enable_x64:
            why += ("; float32 only: float64 needs JAX_ENABLE_X64=1, set before JAX is "
                    "imported")
        return usable, why

    @classmethod
    def namespace_of(cls, x):
        return cls.load()

    @staticmethod
    def _jax():
        import jax
        return jax

    @classmethod
    def _all_devices(cls):
        """``[(name, device)]``: ``cpu``, then each GPU as ``gpu``/``cuda`` (the first) and
        ``cuda:N``/``gpu:N``, each TPU as ``tpu``/``tpu:N``."""
        jax = cls._jax()
        cls.load()
        named = []
        for platform in ("cpu", "gpu", "tpu"):
            try:
                found = jax.devices(platform)
            except RuntimeError:  # no such backend in this build
                continue
            for i, device in enumerate(found):
                names = [f"{platform}:{i}"] + ([platform] if i == 0 else [])
                if platform == "gpu":
                    names += [f"cuda:{i}"] + (["cuda"] if i == 0 else [])
                named += [(n, device) for n in names]
        return named

    @classmethod
    def devices(cls):
        seen = []
        for name, _ in cls._all_devices():
            if name not in seen:
                seen.append(name)
        return sorted(seen, key=lambda n: (n.split(":")[0] != "cpu", ":" in n, n))

    @classmethod
    def default_device(cls):
        """JAX's default device (a GPU or TPU where its build sees one, else the CPU); in a
        data-parallel job the GPU of the process's local rank."""
        jax = cls._jax()
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        if gpus:
            try:
                index = mpi_env.launched_gpu(len(gpus), "JAX")
            except ValueError as e:
                raise Unusable(str(e)) from None
            if index is not None:
                return gpus[index]
        return jax.devices()[0]

    @classmethod
    def parse_device(cls, value):
        jax = cls._jax()
        cls.load()
        if value is None:
            return cls.default_device()
        if isinstance(value, jax.Device):
            return value
        name = str(value).lower()
        for known, device in cls._all_devices():
            if known == name:
                return device
        why = ""
        if name.split(":")[0] in ("gpu", "cuda", "rocm", "tpu"):  # JAX's accelerators come
            why = (" (JAX's GPU and TPU builds are installed apart from its CPU one: "  # apart
                   "pip install 'jax[cuda12]', or 'jax[tpu]')")
        raise Unusable(cls._no_device(value) + why)

    @classmethod
    def to_numpy(cls, x):
        import numpy
        return numpy.asarray(x)

    @classmethod
    def device_of(cls, x):
        """``x.device``; None for a tracer (inside ``jax.jit`` arrays have no device yet)."""
        return getattr(x, "device", None)

    @classmethod
    def out_of_memory(cls, error):
        """XLA's words for it, in a ``JaxRuntimeError``: ``RESOURCE_EXHAUSTED: Out of memory
        allocating ... bytes`` where the allocation failed, and the same ending on
        ``INTERNAL: Error dispatching computation: ...`` where a later read surfaced it
        (JAX dispatches asynchronously: an eager call returns before its arrays exist, so
        its failure is raised by whatever reads them)."""
        if isinstance(error, MemoryError):
            return True
        text = str(error) if isinstance(error, RuntimeError) else ""
        return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()

    @classmethod
    def is_device_array(cls, x):
        """True: reading a JAX array's values waits for JAX's asynchronous dispatch to finish
        the work queued before it, on the CPU as on a GPU (an eager TwoLayerNet step that
        read its labels each step ran 25-30% slower on this project's CPU), and a tracer's
        cannot be read at all. So the loss never reads the labels (a label outside the
        classes gives a NaN loss, as on a GPU; the Trainer checks its data once, where it
        is sent)."""
        return True

    @classmethod
    def _make_ops(cls, settings):
        """The JAX wing (:mod:`backends.jax.ops`): XLA's convolution."""
        from backends.jax.ops import JaxOps
        return JaxOps(cls.load(), cls)

    def step_compiler(self):
        """``jax.jit`` and what a compiled step needs (:mod:`backends.jax.compile`)."""
        from backends.jax import compile
        return compile

    @property
    def description(self):
        return f"jax on {self.device}"

    def in_host_memory(self):
        # XLA's CPU buffers come from malloc: a compiled DeepConvNet step's im2col columns
        # (45 MB for Conv2) faulted in afresh at every step without the Trainer's policy
        return self.device.platform == "cpu"

    def dtype(self, dtype):
        name = None if dtype is None else self._dtype_name(dtype)
        if name in ("float64", "int64", "uint64") and not self.has_float64():
            if name == "float64":
                what, otherwise = "computes in float32", "or use float32 (dtype='float32')"
            else:
                what, otherwise = "has no 64-bit integers", "or use 'int32' or 'uint32'"
            raise TypeError(f"JAX {what} unless JAX_ENABLE_X64=1 is set before it is imported "
                            f"(it would cast {name} to 32 bits without a word): set "
                            f"JAX_ENABLE_X64=1 (float32 networks stay float32: their dtype is "
                            f"explicit), {otherwise}")
        return super().dtype(dtype)

    def _to_device(self, x, dtype):
        """A host array cast (or copied) on the host by NumPy, to a type whose cast is exact
        or rounds to nearest as XLA's does, and placed by ``jax.device_put``:
        ``jnp.asarray(x, dtype=, device=)`` ran two computations for it, a cast and a
        placement, each compiled for every new shape (tens of milliseconds each on a CPU,
        once for every batch size a loop feeds). ``device_put`` is handed a copy no one
        else holds: it may read the host's memory after it returns, and on the CPU may keep
        it as the array's own (JAX 0.10.2 did so even with ``may_alias=False``), where a
        later write to ``x`` would show. Other data: the standard's way."""
        import numpy
        if isinstance(x, numpy.ndarray) and x.dtype.name in HOST_CASTS:
            target = x.dtype if dtype is None else numpy.dtype(dtype)
            if target.name in HOST_CASTS:
                return self._jax().device_put(x.astype(target, copy=True), self.device)
        return super()._to_device(x, dtype)

    @contextlib.contextmanager
    def with_float64(self):
        """``jax_enable_x64`` on within the block, as it was after it (JAX's own switch,
        scoped: the pytest plugin runs its float64 checks in it)."""
        jax = self._jax()
        before = bool(jax.config.jax_enable_x64)
        jax.config.update("jax_enable_x64", True)
        try:
            yield
        finally:
            jax.config.update("jax_enable_x64", before)

    def synchronize(self):
        """Wait for JAX's queued work on this device (an array's ``block_until_ready``)."""
        self.xp.zeros((), device=self.device).block_until_ready()
