"""What can be said of any array without asking which library made it.

Shapes, sizes and dtype names read the same on every library; so do the keywords that
make a new array on another's device, and whether a device has float64. Everything
that depends on the library (its namespace, moving it to the host, where it lives) is
its backend's (:mod:`backends.backend`), reached through :mod:`backends.registry`.
"""

import math
import numbers

import numpy


def is_array(x):
    """Whether ``x`` is an array of some library (not a Python number or None)."""
    return isinstance(x, numpy.ndarray) or hasattr(x, "shape")


def native_order(x):
    """``x`` with its bytes in this machine's order where it is a NumPy array in the other
    (``>f4``, as big-endian files give it: FITS, some HDF5 and MATLAB), else ``x``. For
    data on its way to a library that takes no other (PyTorch, JAX, CuPy and
    array-api-strict refuse it in their own words)."""
    if isinstance(x, numpy.ndarray) and not x.dtype.isnative:
        return x.astype(x.dtype.newbyteorder("="))
    return x


def check_arrays(where, whose=None, **arrays):
    """``TypeError`` naming ``where`` and the first of ``arrays`` that is not an array (a
    list of numbers, say), with what to do (``whose``: where the array should come from,
    ``"the network's"`` backend, say); nothing where each is one. For the places that
    would otherwise fail in Python's words about a list's missing ``shape``."""
    for name, a in arrays.items():
        if not is_array(a):
            source = f" (NumPy's, or {whose} backend's)" if whose else ""
            raise TypeError(f"{where}: {name} must be an array{source}, got "
                            f"{type(a).__name__}; convert it first (numpy.asarray, or "
                            f"backends.to_device)") from None


def check_flag(owner, what, value):
    """True or False (NumPy's booleans, 0 and 1 too), as a bool; else ``ValueError`` naming
    ``owner`` and ``what``: a string such as "no" would be true."""
    if isinstance(value, numbers.Integral) and value in (0, 1) or \
            getattr(value, "shape", None) == () and dtype_kind(value.dtype) == "b":
        return bool(value)
    raise ValueError(f"{owner}: {what} must be True or False, got {value!r}")


def size(x):
    """The number of elements of ``x`` (``x.size`` is a method on PyTorch tensors)."""
    return math.prod(x.shape)


def dtype_name(dtype):
    """``"float32"``, ``"int64"``...: a dtype's name whatever its library (NumPy's
    ``.name``, ``torch.float32``, ``array_api_strict.float32``), or of a scalar type
    (``numpy.float32``, ``jax.numpy.float32``, whose own string is the class's,
    ``"<class 'numpy.float32'>"``)."""
    if isinstance(dtype, type):
        try:
            return numpy.dtype(dtype).name
        except TypeError:
            pass
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    return str(dtype).rsplit(".", 1)[-1]


#: float types a network refuses: PyTorch and JAX have them, but the book's layers in them
#: failed deep in the library (PyTorch has no ReLU for float8) or went untested
NARROW_FLOATS = ("bfloat16", "float8_", "float6_", "float4_")


def float_dtype(owner, backend, dtype):
    """``dtype`` (default float32) as ``backend``'s floating dtype, or ``ValueError`` naming
    ``owner`` (a network, ``DeviceBatches``) and what was given: an integer type would
    truncate, a misspelt name was the library's own error, and ``bfloat16`` or ``float8_*``
    failed deep in PyTorch or was called no floating type. A device without float64 says
    so itself."""
    name = dtype_name(dtype) if dtype is not None else "float32"
    if name.startswith(NARROW_FLOATS):
        raise ValueError(f"{owner}: dtype {name} is too narrow for the layers, which compute "
                         f"in float32 (the default), float64 or float16; data in {name} is "
                         f"cast to the network's dtype on the way in")
    try:
        out = backend.dtype(dtype or "float32")
    except (TypeError, AttributeError, ValueError):
        if name == "float64":  # a device without float64 says so itself, and what to do
            raise
        if name == "float16":  # a floating type, which this library (the standard) lacks
            wide = ", or float64" if backend.has_float64() else ""
            raise ValueError(f"{owner}: {backend.description} has no float16; expected a "
                             f"floating type it has (float32, the default{wide})") from None
        raise ValueError(f"{owner}: dtype must be a floating type, got {dtype!r}") from None
    if dtype_kind(out) != "f":
        raise ValueError(f"{owner}: dtype must be a floating type, got {dtype_name(out)}")
    return out


#: why NumPy's masked arrays are refused wherever they enter (the registry, to_device)
MASKED = ("NumPy's masked arrays cannot be computed on by xpnet: their masks would be "
          "dropped and the masked values used; fill them first (a.filled(value)), or leave "
          "out the samples they are in")

#: why NumPy's matrix class is refused where it would be computed on (the registry)
MATRIX = ("numpy.matrix cannot be computed on by xpnet: its * is a matrix product and its "
          "sums and rows keep two axes, so the layers would compute other numbers (a loss "
          "summed over the batch, an accuracy above 1) without a word; convert it first "
          "(numpy.asarray(x), as scipy.sparse's .toarray() gives it)")

#: what NumPy's kinds that are no numbers hold, for the errors that refuse them
_NOT_NUMBERS = {"O": "Python objects", "U": "text", "S": "bytes", "V": "raw records",
                "M": "dates", "m": "time spans"}


def host_numbers(where, x, dtype=None):
    """Host data (a Python number, nested lists, a buffer, a NumPy array) as a NumPy array,
    checked to hold numbers: ``ValueError`` naming ``where`` for ``None``, text, dates or
    Python objects (NumPy read ``None`` as NaN, ``"1.0"`` as 1.0 and a date as its day
    count without a word), and for complex values asked for as a real ``dtype`` (their
    imaginary parts would be dropped). Another library's array is returned as it is."""
    if is_array(x) and not isinstance(x, (numpy.ndarray, memoryview)):
        return x
    if type(x).__module__.startswith("numpy.ma"):
        raise TypeError(MASKED)
    a = numpy.asarray(x)
    kind = dtype_kind(a.dtype)  # "f" for ml_dtypes' bfloat16 and float8, NumPy's "V"
    if kind in _NOT_NUMBERS:
        raise ValueError(f"{where}: x holds {_NOT_NUMBERS[kind]} (dtype {a.dtype}); expected "
                         f"numbers: convert them first (numpy.asarray(x, dtype=float))")
    if kind == "c" and dtype is not None and dtype_kind(dtype) != "c":
        raise ValueError(f"{where}: x holds complex numbers, and dtype {dtype_name(dtype)} "
                         f"would drop their imaginary parts; take x.real or abs(x) first")
    return a


def dtype_kind(dtype):
    """NumPy's one-letter kind of any library's dtype: ``"f"``, ``"i"``, ``"u"``, ``"b"``, ``"c"``.

    ``"f"`` for every floating type, those NumPy itself lacks included: PyTorch's and
    JAX's ``bfloat16``, and ``ml_dtypes``' ``bfloat16`` and ``float8_*`` (the NumPy
    arrays JAX's come to the host as), whose NumPy kind is ``"V"``, raw records."""
    kind = getattr(dtype, "kind", None)
    if isinstance(kind, str) and kind != "V":
        return kind
    name = dtype_name(dtype)
    if name == "bfloat16":
        return "f"
    for prefix, letter in (("bool", "b"), ("uint", "u"), ("int", "i"), ("float", "f"),
                           ("complex", "c")):
        if name.startswith(prefix):
            return letter
    return kind if isinstance(kind, str) else "O"


def extension_float(x):
    """Whether ``x`` is a NumPy array of a floating type NumPy holds only through
    ``ml_dtypes`` (``bfloat16``, ``float8_*``: what JAX's arrays of those types come to the
    host as). No other library takes such an array from NumPy; each of its values is a
    float32 exactly."""
    return isinstance(x, numpy.ndarray) and x.dtype.kind == "V" and dtype_kind(x.dtype) == "f"


def on_device_of(xp, like):
    """Keyword arguments that create an array on ``like``'s device: ``{"device": ...}``,
    or none for NumPy's module and CuPy's own (which takes no ``device=``: it creates on
    its current device). array-api-compat's CuPy namespace takes one, as the standard's."""
    if xp is numpy or getattr(xp, "__name__", "") == "cupy":
        return {}
    device = getattr(like, "device", None)  # none for JAX's tracers: made where traced
    return {} if device is None else {"device": device}


def _has_dtype(namespace, device, name, kind):
    """Whether ``device`` of ``namespace`` has the dtype ``name`` (of the standard's
    ``kind``); True where the library cannot say."""
    info = getattr(namespace, "__array_namespace_info__", None)
    if info is None:
        return True
    try:
        return name in info().dtypes(device=device, kind=kind)
    except Exception:
        return True


def has_float64(namespace, device):
    """Whether ``device`` of ``namespace`` computes in float64 (Apple's MPS does not)."""
    return _has_dtype(namespace, device, "float64", "real floating")


def has_int64(namespace, device):
    """Whether ``device`` of ``namespace`` has 64-bit integers (JAX without
    ``jax_enable_x64`` has none; array-api-strict's ``no_x64`` device models such a one)."""
    return _has_dtype(namespace, device, "int64", "signed integer")


def host_rng(seed=None, where=None):
    """A seeded NumPy generator on the host.

    Parameters are drawn here and then sent to the backend, so the same seed
    gives the same network on every backend. ``seed``: None (fresh entropy), a
    non-negative integer, or anything else ``numpy.random.default_rng`` takes but a bool
    (``seed=True`` read as 1, where a network refuses it); anything else is a
    ``ValueError`` that names the seed, and ``where`` (who was given it) where given.
    """
    said = f"{where}: " if where else ""
    if isinstance(seed, (bool, numpy.bool_)):
        raise ValueError(f"{said}seed={seed!r}: expected None or a non-negative integer")
    try:
        return numpy.random.default_rng(seed)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{said}seed={seed!r}: expected None or a non-negative integer "
                         f"(NumPy: {e})") from None


def sum_in_rank_order(rows):
    """``rows[0] + rows[1] + ...``, added left to right, for a ``(ranks, ...)`` block of
    each rank's part: the same bits on every rank and in every run, whatever the block's
    library (``rows.sum(0)`` may pair the terms differently by size and machine, and
    floating-point addition is not associative: 1.0, 1e16 and -1e16 sum to 0.0 in this
    order and to 1.0 in the reverse). The data-parallel gradient's sum, on the host (MPI)
    and on the GPUs (NCCL) alike."""
    total = rows[0, ...].copy() if hasattr(rows, "copy") else rows[0, ...] + 0
    for i in range(1, rows.shape[0]):
        total += rows[i, ...]
    return total
