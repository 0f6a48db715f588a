"""What a backend is: one array library, what xpnet knows about it, and one of its devices.

A subclass of :class:`Backend` per library lives in that library's own module
(:mod:`backends.host.backend` for NumPy, :mod:`backends.cuda.backend` for CuPy,
:mod:`backends.standard` for the libraries reached through the Array API standard and
the small modules that hook PyTorch and array-api-strict into it), and one line of
:mod:`backends.registry` names it. Nothing outside the backends asks which library
an array belongs to: it asks the registry, which asks the classes.

The class speaks for the library, whatever the device:

``name``, ``modules``, ``install``
    the registry's name (``XPNET_BACKEND``), the top-level modules whose arrays are
    the library's (``"torch"``), and how to install it where it is missing;
:meth:`load`, :meth:`usable`
    the namespace, or :class:`Unusable` saying why not (probed once a process);
:meth:`devices`, :meth:`parse_device`, :meth:`default_device`
    the devices it offers here, a name (``"cuda:1"``) or its own device object
    turned into the device object, and where arrays go by default;
:meth:`namespace_of`, :meth:`to_numpy`, :meth:`device_of`, :meth:`is_device_array`,
:meth:`copy`
    one of its arrays: the namespace to compute with, a host copy, where it lives,
    whether reading it waits for an accelerator, a copy in its own namespace;
:meth:`operations`
    its :class:`backends.ops.Ops`, made once per :class:`backends.settings.Settings`.

An instance is the library on one device (``backends.current()``, ``backend_of(x)``):
``name``, ``xp`` (the namespace), ``device``, ``reason`` (why it was chosen), and
:attr:`description`, :meth:`dtype`, :meth:`asarray`, :meth:`full`,
:meth:`synchronize`, :meth:`memory`. Two instances are equal when they name the same
library and device.
"""

import contextlib
import threading

import numpy

from backends.arrays import dtype_name


class Unusable(RuntimeError):
    """A library or device that cannot be used here; the message says why and what to do.
    ``missing``: the library is not installed (so installing it is the remedy)."""

    def __init__(self, message, missing=False):
        super().__init__(message)
        self.missing = missing


#: held while a library's operations are made (once per settings snapshot), not after
_MAKING = threading.RLock()

class Backend:
    """One array library (the class) on one of its devices (an instance): see the module."""

    name = ""
    modules = ()
    install = ""
    #: the settings its operations depend on: a scoped change of another leaves them be
    settings_fields = ()
    #: whether its arrays are written in place (NumPy, CuPy, PyTorch, array-api-strict);
    #: JAX's are not: every write makes a new array, which the writer must keep
    mutable = True

    # --- the library -------------------------------------------------------------------

    @classmethod
    def _load(cls):
        """The library's namespace, importing it; :class:`Unusable` saying why not."""
        raise NotImplementedError

    @classmethod
    def load(cls):
        """The namespace, or :class:`Unusable` (the probe runs once a process, per class)."""
        probe = cls.__dict__.get("_probe")
        if probe is None:
            try:
                probe = (cls._load(), None)
            except Unusable as e:  # kept without its traceback
                probe = (None, Unusable(str(e), e.missing))
            except Exception as e:  # a broken install fails in its own ways
                probe = (None, Unusable(f"{cls.name} failed to import "
                                        f"({type(e).__name__}: {e})"))
            cls._probe = probe
        namespace, why = probe
        if namespace is None:
            raise Unusable(str(why), why.missing)
        return namespace

    @classmethod
    def usable(cls):
        """``(True, its devices in words)`` or ``(False, why not)``."""
        try:
            cls.load()
        except Unusable as e:
            return False, str(e)
        return True, "devices: " + ", ".join(cls.devices())

    @classmethod
    def version(cls):
        """The library's version, for ``python -m backends``."""
        return getattr(cls.load(), "__version__", "")

    @classmethod
    def devices(cls):
        """Names of the devices it offers here."""
        return ["cpu"]

    @classmethod
    def default_device(cls):
        """The device arrays go to when none is named."""
        return cls.parse_device("cpu")

    @classmethod
    def parse_device(cls, value):
        """The device object for ``value`` (a name, or the library's own device object);
        :class:`Unusable` naming what exists."""
        if value is None:
            return cls.default_device()
        if str(value).lower() in cls.devices():
            return "cpu"
        raise Unusable(cls._no_device(value))

    @classmethod
    def _no_device(cls, value):
        return f"{cls.name} has no device {value!r} here; it has: {', '.join(cls.devices())}"

    @classmethod
    def operations(cls, settings):
        """The :class:`backends.ops.Ops` for this library under ``settings``: one object per
        settings snapshot, kept on the class (a scoped change gets its own, and the old
        one back when the scope ends)."""
        cache = cls.__dict__.get("_operations")
        key = (settings.fast_paths,) + tuple(getattr(settings, f) for f in cls.settings_fields)
        ops = cache.get(key) if cache is not None else None
        if ops is None:
            # made once, under a lock: threads that met the library at the same moment
            # each made their own (four threads' first network calls, four HostOps)
            with _MAKING:
                cache = cls.__dict__.get("_operations")
                if cache is None:
                    cache = cls._operations = {}
                ops = cache.get(key)
                if ops is None:
                    ops = cache[key] = cls._make_ops(settings) if settings.fast_paths else \
                        cls._reference_ops()
        return ops

    @classmethod
    def _reference_ops(cls):
        """The standard's operations on this library's namespace."""
        from backends.ops import StandardOps
        return StandardOps(cls.load())

    @classmethod
    def _make_ops(cls, settings):
        """The operations with this library's fast paths (none here: the reference's)."""
        return cls._reference_ops()

    # --- one of its arrays ----------------------------------------------------------------

    @classmethod
    def namespace_of(cls, x):
        """The namespace to compute on ``x`` with."""
        return cls.load()

    @classmethod
    def to_numpy(cls, x):
        """A host ``numpy.ndarray`` of ``x``'s values."""
        return numpy.from_dlpack(x)

    @classmethod
    def device_of(cls, x):
        """Where ``x`` lives, as the library names it."""
        return x.device

    @classmethod
    def is_device_array(cls, x):
        """Whether reading ``x``'s values means waiting for an accelerator or an asynchronous
        runtime (the queued work that computes them)."""
        return False

    @classmethod
    def copy(cls, x):
        """A copy of ``x`` in its own namespace."""
        return cls.namespace_of(x).asarray(x, copy=True)

    @classmethod
    def kind(cls, x):
        """What error messages call where ``x`` lives: ``"numpy"``, ``"torch on cuda:0"``."""
        return f"{cls.name} on {cls.device_of(x)}"

    @classmethod
    def out_of_memory(cls, error):
        """Whether ``error``, raised by a computation on this library's arrays, says the
        device ran out of memory: Python's ``MemoryError`` (NumPy's, CuPy's
        ``OutOfMemoryError``); a library that says it otherwise answers for its own words.
        Asked only where a call failed, so that a network can say which batch was too
        large and what to do."""
        return isinstance(error, MemoryError)

    # --- on one device ---------------------------------------------------------------------

    def __init__(self, device=None, reason=""):
        self.xp = self.load()
        self.device = device
        self.reason = reason

    @property
    def description(self):
        """In words: ``"CPU"``, the GPU's name and compute capability, or the device."""
        return f"{self.name} on {self.device}"

    def has_float64(self):
        """Whether this device computes in float64 (Apple's MPS does not)."""
        return True

    def has_int64(self):
        """Whether this device has 64-bit integers (JAX without ``jax_enable_x64`` has none)."""
        return True

    def dtype(self, dtype):
        """The namespace's dtype for a name (``"float32"``), a NumPy dtype or any library's."""
        if dtype is None:
            return None
        return numpy.dtype(self._dtype_name(dtype))

    @staticmethod
    def _dtype_name(dtype):
        """The standard's name of ``dtype``: ``"float32"`` for ``"float32"``, NumPy's other
        spellings (``"f4"``; ``"float"`` and ``"double"`` are float64 on every backend, as
        in NumPy, where PyTorch would read ``"float"`` as its float32), a scalar type or
        any library's dtype. A string NumPy does not know is left to the library."""
        if isinstance(dtype, str):
            try:
                return numpy.dtype(dtype).name
            except (TypeError, ValueError):  # not NumPy's: the library's to find, or not
                return dtype
        return dtype_name(dtype)

    def asarray(self, x, dtype=None):
        """Host (or device) data as an array of this backend, on its device."""
        raise NotImplementedError

    def full(self, shape, value, dtype="float32"):
        """A new array of ``shape`` filled with ``value``, on this backend's device."""
        raise NotImplementedError

    def synchronize(self):
        """Wait for the device's queued work; nothing to wait for on the CPU."""

    def memory(self):
        """Bytes the library holds on this device, by pool (``{}`` where it keeps none
        of its own: the host's memory is the process's)."""
        return {}

    def graph_runtime(self):
        """The module that records and replays a step as a graph on this device
        (``Feed``, ``capture``, ``synchronize``: :mod:`backends.cuda.graph` is the
        model), or None where there is none."""
        return None

    def step_compiler(self):
        """The module that compiles a whole training step (``jit``, ``gather``, ``put``,
        ``index``: :mod:`backends.jax.compile`), or None where the library compiles none."""
        return None

    def scratch(self):
        """A context for a caller's passing work (a trial of steps, an evaluation): what it
        allocates comes from a pool of this backend's own, whose cached blocks go back to
        the device on leaving; arrays still alive keep theirs. Nothing on libraries that
        keep no pool of their own."""
        return contextlib.nullcontext()

    #: whether its arrays are host memory a transport (MPI) reads in place
    host_buffers = False

    def in_host_memory(self):
        """Whether this device's arrays are the process's own memory, handed out by the C
        library's ``malloc``: NumPy's (and array-api-strict's, NumPy's underneath), PyTorch's
        and JAX's on the CPU. The Trainer fixes malloc's policy for its run where they
        are (:func:`backends.host_allocator_for_training`): a step's temporaries then come
        back from the heap instead of fresh pages that fault on first touch."""
        return False

    def with_float64(self):
        """A context in which the library computes in float64 where a switch of its own
        holds it back (JAX's ``jax_enable_x64``), given back after; nothing elsewhere."""
        return contextlib.nullcontext()

    def held_to_standard(self, version):
        """A context within which the library allows only the Array API standard's
        ``version`` (a test's check that code keeps to it); nothing where it cannot."""
        return contextlib.nullcontext()

    def __repr__(self):
        return f"Backend({self.name!r}, device={self.device!r})"

    def __eq__(self, other):
        return isinstance(other, Backend) and (other.name, str(other.device)) == \
            (self.name, str(self.device))

    def __hash__(self):
        return hash((self.name, str(self.device)))
