"""The registry: the backends xpnet knows, which one an array belongs to, and the process's state.

:data:`ENTRIES` names every backend by the class that speaks for its library (a
:class:`backends.backend.Backend` subclass, imported on first need, so CuPy or PyTorch
is loaded only where one of their arrays or names turns up). Adding a library is a
module holding its class and one line here. :data:`REFUSED` names the libraries that
cannot be backends, and why.

The one :class:`Registry`, :data:`REGISTRY`, holds what is xpnet's for the whole process:
the settings (read once: :mod:`backends.settings`), the default backend, the array type
-> backend answers (asked for every array, so answered from a dict after the first),
each library's operations under the settings in force, the host's allocator policy, and
the data-parallel world this process is in (made once by :func:`framework.distributed.world`).
Changes inside a program are scoped: :meth:`Registry.using` (the default backend) and
:meth:`Registry.configured` (the settings) give back what they changed.
"""

import contextlib
import contextvars
import importlib

import numpy

from backends.arrays import MASKED, MATRIX, extension_float, is_array
from backends.backend import Unusable
from backends.host.allocator import HostAllocator
from backends.host.threads import Blas
from backends.settings import Settings

ENV_VAR = "XPNET_BACKEND"
DEVICE_ENV_VAR = "XPNET_DEVICE"

#: name -> "module:class" of its backend
ENTRIES = {
    "numpy": "backends.host.backend:NumpyBackend",
    "cupy": "backends.cuda.backend:CupyBackend",
    "torch": "backends.torch.backend:TorchBackend",
    "array_api_strict": "backends.strict:StrictBackend",
    "jax": "backends.jax.backend:JaxBackend",
}
#: library -> why its arrays are refused (a ``TypeError`` where one is computed on) and why
#: it cannot be a backend (JAX's, refused for its immutable arrays, is one now)
REFUSED = {"scipy": "its sparse matrices and arrays hold only their nonzero entries, and the "
                    "layers compute on dense ones; convert one first (x.toarray())"}
GENERIC = "backends.standard:StandardBackend"  # any other library with the standard's namespace


def _import(spec):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


class Registry:
    """The backends by name and by array type, and the process's settings and default: see
    the module. Its hot methods (:meth:`ops_for`, :meth:`namespace`) answer from a dict
    keyed by the array's type."""

    def __init__(self, entries=ENTRIES, refused=REFUSED):
        self.entries = dict(entries)
        self.refused = dict(refused)
        self.allocator = HostAllocator()
        #: NumPy's BLAS threads, lent to xpnet's host operations within network calls: one
        #: for the process, as BLAS's thread count is (backends/host/threads.py)
        self.blas = Blas()
        self._classes = {}  # name -> Backend subclass, imported on first need
        self._by_module = None  # top-level module name -> Backend subclass
        self._class_by_type = {}
        self._namespace_by_type = {}
        self._ops_by_type = {}
        self._settings = None
        self._default = None  # the process's default backend (use(), XPNET_BACKEND)
        #: the backend a using() block chose, for the thread (or task) that entered it:
        #: None outside every block. Another thread's block is not this thread's default
        self._scoped = contextvars.ContextVar(f"xpnet_backend_{id(self)}", default=None)
        #: the :class:`framework.distributed.World` of this process, once made: an MPI
        #: launcher's processes are fixed for the process's life
        self.world = None
        #: counts changes of settings: whoever resolved operations once (a network's calls)
        #: resolves them again when it moves
        self.generation = 0

    @property
    def names(self):
        return tuple(self.entries)

    # --- the settings -------------------------------------------------------------------

    @property
    def settings(self):
        """The :class:`backends.settings.Settings` in force, read from the environment the
        first time they are needed."""
        if self._settings is None:
            self._set_settings(Settings.read())
        return self._settings

    def _set_settings(self, settings):
        self._settings = settings
        self._ops_by_type.clear()
        self.generation += 1

    @contextlib.contextmanager
    def configured(self, **changes):
        """Within the block, the settings with ``changes`` (``fused=False``, ``graph_gemm=
        "own"``, ``host_kernels=False``, ``fast_paths=False``...); the settings before are
        given back on the way out. The default backend is :meth:`using`'s."""
        if {"backend", "device"} & set(changes):
            raise TypeError("backends.configured: the default backend and device are "
                            "backends.using(name, device)'s to change")
        previous = self.settings
        self._set_settings(previous.replace(**changes))
        try:
            yield self._settings
        finally:
            self._set_settings(previous)

    # --- the backends by name -----------------------------------------------------------

    def register(self, name, spec):
        """Add a backend: ``name`` (what ``XPNET_BACKEND`` and :meth:`use` take) for the class
        ``spec`` names, ``"module:Class"`` (imported on first need). A library whose arrays
        another entry claimed is this one's from now on. Process-wide, as the entries are."""
        self.entries[name] = spec
        self._forget(name)

    def unregister(self, name):
        """Forget the backend :meth:`register` added as ``name``."""
        del self.entries[name]
        self._forget(name)

    def _forget(self, name):
        """Drop every answer an entry's change may alter."""
        self._classes.pop(name, None)
        self._by_module = None
        self._class_by_type.clear()
        self._namespace_by_type.clear()
        self._ops_by_type.clear()
        self.generation += 1

    def backend_class(self, name):
        """The Backend subclass registered as ``name`` (``KeyError`` where none is)."""
        cls = self._classes.get(name)
        if cls is None:
            cls = self._classes[name] = _import(self.entries[name])
        return cls

    def available(self):
        """Backend names usable on this machine, e.g. ``["numpy", "array_api_strict"]``."""
        return [name for name in self.entries if self.backend_class(name).usable()[0]]

    def check_name(self, name, source):
        """``name`` lower-cased if it names a backend or ``auto``; ``ValueError`` naming
        ``source`` (who asked), what exists, or why a refused library cannot be one."""
        choices = self.names + ("auto",)
        text = name.strip().lower() if isinstance(name, str) else name
        if text in self.refused:
            raise ValueError(f"{source}={name!r}: {self.refused[text]}, so it cannot be a "
                             f"backend; expected one of {', '.join(choices)}")
        if text not in choices:
            raise ValueError(f"{source}={name!r} is not a backend; expected one of "
                             f"{', '.join(choices)} (python -m backends lists what is usable "
                             f"here)")
        return text

    def make(self, name, source, device=None, device_source=DEVICE_ENV_VAR):
        """The backend instance for a checked ``name`` on ``device``; ``source`` says who
        asked. Never falls back silently: an unusable one is a ``RuntimeError`` saying why
        and what to do."""
        if name == "auto" and device is not None:
            raise ValueError(f"{device_source}={device!r} needs a backend: name one of "
                             f"{', '.join(self.names)} (auto picks its own device)")
        if name == "auto":
            cupy = self.backend_class("cupy")
            usable, why = cupy.usable()
            if usable:
                why = "CuPy imported and reports a CUDA device"
                try:
                    where = cupy.parse_device(None)
                except Unusable as e:
                    raise RuntimeError(f"{source}=auto chose CuPy: {e}") from None
                return cupy(where, f"{source}=auto: {why}")
            numpy_backend = self.backend_class("numpy")
            return numpy_backend("cpu", f"{source}=auto: {why}; using NumPy on the CPU")
        cls = self.backend_class(name)
        try:
            cls.load()
        except Unusable as e:
            # installing is the remedy only where the library is missing (not a GPU or driver)
            hint = f"; to install it: {cls.install}" if e.missing and cls.install and \
                "pip install" not in str(e) else ""
            raise RuntimeError(f"{source}={name}, but that backend cannot be used: {e}{hint}; "
                               f"or run on the CPU with {ENV_VAR}=numpy") from None
        try:
            where = cls.parse_device(device)
        except Unusable as e:
            raise RuntimeError(f"{source}={name} with {device_source}={device!r}: {e}") from None
        return cls(where, f"{source}={name} (asked for by name)")

    # --- the default backend ---------------------------------------------------------------

    def use(self, name, device=None):
        """Set the default backend and return it: ``"numpy"``, ``"cupy"``, ``"torch"``,
        ``"array_api_strict"`` or ``"auto"``; ``device`` a name (``"cuda:1"``, ``"mps"``,
        ``"device1"``) or the library's own device object, None for its default."""
        return self._use(name, device, "backends.use", "device")

    def _use(self, name, device, source, device_source):
        """:meth:`use`, its errors naming ``source`` and ``device_source`` (what was typed).
        Inside a :meth:`using` block it changes that block's backend, given back with it."""
        backend = self._made(name, device, source, device_source)
        if self._scoped.get() is not None:
            self._scoped.set(backend)
        else:
            self._default = backend
        return backend

    @contextlib.contextmanager
    def using(self, name, device=None):
        """Within the block, ``name`` on ``device`` is the default backend (see :meth:`use`)
        of the thread that entered it (of the asyncio task, as a ``contextvars`` variable
        is): other threads keep theirs, so two threads' blocks at once neither see nor undo
        each other's. On the way out the default before is back. Yields the backend."""
        backend = self._made(name, device, "backends.use", "device")
        token = self._scoped.set(backend)
        try:
            yield backend
        finally:
            self._scoped.reset(token)

    def _made(self, name, device, source, device_source):
        return self.make(self.check_name(name, source), source, device, device_source)

    @contextlib.contextmanager
    def kept(self):
        """Within the block, anything may change the default backend and the settings
        (:meth:`use`, :meth:`reset`, :meth:`configured`); both are put back on the way out
        (the pytest plugin wraps every test in this)."""
        default, settings = self._default, self._settings
        token = self._scoped.set(self._scoped.get())
        try:
            yield
        finally:
            self._scoped.reset(token)
            self._default = default
            if settings is not self._settings:
                self._settings = settings
                self._ops_by_type.clear()
                self.generation += 1

    def current(self):
        """The default backend: a :meth:`using` block's in the thread that entered it, else
        the process's, resolving ``XPNET_BACKEND`` and ``XPNET_DEVICE`` (the settings) on
        first use."""
        scoped = self._scoped.get()
        if scoped is not None:
            return scoped
        if self._default is None:
            settings = self.settings
            name = self.check_name(settings.backend or "auto", ENV_VAR)
            if settings.device is not None and name == "auto":
                raise ValueError(f"{DEVICE_ENV_VAR}={settings.device!r} needs a backend: set "
                                 f"{ENV_VAR} to one of {', '.join(self.names)}")
            self._default = self.make(name, ENV_VAR, settings.device)
        return self._default

    def chosen(self, name=None, device=None):
        """The backend a command line asks for (a script's ``--backend`` and ``--device``):
        each where given, over ``XPNET_BACKEND`` and ``XPNET_DEVICE``; the default
        (:meth:`current`) where neither is."""
        if name is None and device is None:
            return self.current()
        if name is None:
            return self._use(self.settings.backend or "auto", device, ENV_VAR, "--device")
        return self._use(name, device, "--backend", "--device")

    def reset(self):
        """Forget the default backend and the settings: the next use reads the environment
        again."""
        self._default = None
        self._settings = None
        self._ops_by_type.clear()
        self.generation += 1

    # --- arrays ----------------------------------------------------------------------------

    def _modules(self):
        if self._by_module is None:
            self._by_module = {module: self.backend_class(name)
                               for name in self.entries
                               for module in self.backend_class(name).modules}
        return self._by_module

    def class_of(self, x):
        """The Backend subclass ``x``'s library has (NumPy's for Python numbers and NumPy
        scalars); ``TypeError`` for a refused library's arrays, for NumPy's masked arrays
        (a subclass of NumPy's whose mask every operation here would drop) and for
        ``numpy.matrix`` (whose ``*`` is a matrix product)."""
        t = type(x)
        cls = self._class_by_type.get(t)
        if cls is not None:
            return cls
        library = t.__module__.split(".", 1)[0]
        if isinstance(x, (numpy.ndarray, numpy.generic)) or not is_array(x):
            library = "numpy"  # a subclass of NumPy's (a memmap, astropy's Quantity) too
        if library in self.refused:
            raise TypeError(f"{library} arrays cannot be computed on by xpnet: "
                            f"{self.refused[library]}")
        if t.__module__.startswith("numpy.ma"):  # the mask would fall away without a word
            raise TypeError(MASKED)
        if issubclass(t, numpy.matrix):  # (scipy.sparse's .todense()) whose * is a product
            raise TypeError(MATRIX)
        cls = self._modules().get(library)
        if cls is None:  # a library no entry names: the standard's, through its namespace
            cls = _import(GENERIC).for_library(library, _import(GENERIC).namespace_of(x))
            self._by_module[library] = cls
        self._class_by_type[t] = cls
        return cls

    def namespace(self, *arrays):
        """The namespace to compute ``arrays`` with: ``numpy``, CuPy's, or the Array API
        namespace of their library. Python numbers and NumPy scalars count as NumPy, and
        NumPy's arrays give way to another library's (as CuPy's ``get_array_module``);
        arrays of two other libraries are a ``TypeError`` naming both."""
        if arrays and not arrays[1:]:  # one array, the common case: by its type
            try:
                return self._namespace_by_type[type(arrays[0])]
            except KeyError:
                xp = self._namespace_by_type[type(arrays[0])] = \
                    self.class_of(arrays[0]).namespace_of(arrays[0])
                return xp
        others = [a for a in arrays if type(a) is not numpy.ndarray
                  and not isinstance(a, numpy.generic) and is_array(a)]
        if not others:
            return numpy
        cls = self.class_of(others[0])
        for a in others[1:]:  # a mix of libraries, whichever comes first
            if self.class_of(a) is not cls:
                raise TypeError(f"arrays from different libraries ({self.kind(others[0])} and "
                                f"{self.kind(a)}) in one computation; move them to one first "
                                f"(backends.to_device / backends.to_numpy)")
        if len(others) == 1 or cls.name in ("cupy", "array_api_strict"):
            return cls.namespace_of(others[0])
        try:
            import array_api_compat
        except ImportError:
            return cls.namespace_of(others[0])
        return array_api_compat.array_namespace(*others)

    def ops_for(self, x):
        """The operations (:class:`backends.ops.Ops`) for the library ``x`` lives in, under
        the settings in force: CuPy's fused kernels for a CuPy array, the host's for
        NumPy's, the standard's for any other."""
        try:
            return self._ops_by_type[type(x)]
        except KeyError:
            ops = self._ops_by_type[type(x)] = self.class_of(x).operations(self.settings)
            return ops

    def backend_of(self, x):
        """The backend instance an array lives on (for data that must follow a network)."""
        cls = self.class_of(x)
        if cls.name == "numpy":
            return cls("cpu", "where the array lives")
        backend = cls.__new__(cls)
        backend.xp = self.namespace(x)
        backend.device = cls.device_of(x)
        backend.reason = "where the array lives"
        return backend

    def to_numpy(self, x):
        """A host ``numpy.ndarray`` (or NumPy scalar) from an array of any library; another
        library's ``bfloat16`` or ``float8`` as float32, the same values."""
        if type(x) is numpy.ndarray or not is_array(x):
            return numpy.asarray(x)
        out = self.class_of(x).to_numpy(x)
        # bfloat16 and float8 as float32 (the same values): NumPy's types, which files and
        # every other library take (JAX's come as ml_dtypes' types, PyTorch's not at all)
        return out.astype(numpy.float32) if extension_float(out) else out

    def device_of(self, x):
        """Where ``x`` lives, as its library names it: ``"cpu"`` for NumPy, a
        ``cupy.cuda.Device``, a ``torch.device``, an ``array_api_strict.Device``..."""
        if type(x) is numpy.ndarray or not is_array(x):
            return "cpu"
        return self.class_of(x).device_of(x)

    def is_device_array(self, x):
        """True where reading ``x``'s values means waiting for an accelerator or an
        asynchronous runtime (CuPy, a PyTorch tensor on CUDA or MPS, any JAX array): such
        values are never read in a hot loop."""
        if type(x) is numpy.ndarray or not is_array(x):
            return False
        return self.class_of(x).is_device_array(x)

    def is_cupy_array(self, x):
        return type(x) is not numpy.ndarray and is_array(x) and self.class_of(x).name == "cupy"

    def kind(self, x):
        """``"numpy"``, ``"cupy"``, or the library and device, e.g. ``"torch on cuda:0"``:
        what error messages call where an array lives."""
        if type(x) is numpy.ndarray:
            return "numpy"
        return self.class_of(x).kind(x)

    def copy(self, x):
        """A copy of ``x`` in its own namespace."""
        return self.class_of(x).copy(x)

    def out_of_memory(self, error, like):
        """Whether ``error``, raised computing on ``like``'s library, says its device ran out
        of memory (:meth:`backends.backend.Backend.out_of_memory`: each library's words)."""
        try:
            cls = self.class_of(like)
        except TypeError:
            return isinstance(error, MemoryError)
        return cls.out_of_memory(error)

    def check_same_backend(self, where, **arrays):
        """``TypeError`` naming ``where`` if the arrays mix libraries or devices."""
        first = None
        for a in arrays.values():  # the common case, all of one type, without a report
            if first is None:
                first = type(a)
            elif type(a) is not first:
                break
        else:  # one type: only a library whose arrays of one type span devices needs a look
            if first is None or first is numpy.ndarray or \
                    self.class_of(next(iter(arrays.values()))).name in ("numpy", "cupy"):
                return
        kinds = {name: self.kind(a) for name, a in arrays.items() if is_array(a)}
        if len(set(kinds.values())) > 1:
            detail = ", ".join(f"{name} is {k}" for name, k in kinds.items())
            raise TypeError(f"{where}: arrays from different backends ({detail}); move them "
                            f"to one backend first (backends.to_device / backends.to_numpy)")


REGISTRY = Registry()
