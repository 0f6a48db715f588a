"""Which array namespace an array belongs to, where it lives, and moving it to the host.

Everything in ``backends`` that looks at an array imports this module and
nothing above it. NumPy and CuPy arrays are told by their type (CuPy's by
its module's name, so a machine without a GPU never loads CuPy) and answer
with their own modules, which the fast paths use. Any other array answers
with its Array API namespace: ``array_api_compat``'s wrapper where the
library needs one (PyTorch), else the array's own ``__array_namespace__()``
(array-api-strict). JAX's arrays are refused: xpnet updates arrays in place.
"""

import math
import sys

import numpy

_REFUSED = {"jax": "JAX arrays are immutable, and xpnet's layers and optimizers update "
                   "arrays in place (params -= lr * grads, running averages, dropout's "
                   "counters)"}


def _library(x):
    """The top-level module name of ``x``'s type: 'numpy', 'cupy', 'torch', ..."""
    return _library_of_type(type(x))


def _library_of_type(t):
    return t.__module__.split(".", 1)[0]


def is_cupy_array(x):
    # Called several times per layer per step: a NumPy array answers at the
    # first comparison, without building the module-name string.
    if type(x) is numpy.ndarray:
        return False
    return _library(x) == "cupy"


def is_array(x):
    """Whether ``x`` is an array of some library (not a Python number or None)."""
    return isinstance(x, numpy.ndarray) or hasattr(x, "shape")


_namespace_of_type = {}  # one library per type: the answer for one array, by its type


def array_namespace(*arrays):
    """The namespace to compute ``arrays`` with: ``numpy``, ``cupy``, or the Array API
    namespace of their library. Python scalars and NumPy scalars count as NumPy."""
    if len(arrays) == 1:  # most calls: a layer asking about its input, several a step
        xp = _namespace_of_type.get(type(arrays[0]))
        if xp is not None:
            return xp
        xp = _array_namespace(arrays)
        _namespace_of_type[type(arrays[0])] = xp
        return xp
    return _array_namespace(arrays)


def _array_namespace(arrays):
    found = None
    for a in arrays:
        if type(a) is numpy.ndarray or isinstance(a, numpy.generic) or not is_array(a):
            continue
        found = a
        break
    if found is None:
        return numpy
    library = _library(found)
    if library == "cupy":
        return _cupy_namespace()
    if library in _REFUSED:
        raise TypeError(f"{library} arrays cannot be computed on by xpnet: "
                        f"{_REFUSED[library]}")
    try:
        import array_api_compat
    except ImportError:
        if hasattr(found, "__array_namespace__"):
            return found.__array_namespace__()
        raise TypeError(f"no array namespace for {type(found).__name__} arrays: install "
                        f"array-api-compat (pip install 'xpnet[torch]' for PyTorch)") from None
    others = [a for a in arrays if is_array(a) and type(a) is not numpy.ndarray
              and not isinstance(a, numpy.generic)]
    return array_api_compat.array_namespace(*others)


get_array_module = array_namespace  # the name CuPy's users know

_cupy_standard = None


def _cupy_namespace():
    """CuPy with the standard's names the layers call (``astype``, ``permute_dims``,
    ``concat``...): array-api-compat's CuPy namespace where it is installed (the cuda
    extras bring it), for CuPy versions that lack some of them; else CuPy itself."""
    global _cupy_standard
    if _cupy_standard is None:
        try:
            from array_api_compat import cupy as standard
        except ImportError:
            standard = sys.modules["cupy"]
        _cupy_standard = standard
    return _cupy_standard


def device_of(x):
    """Where ``x`` lives, as its namespace names it: ``"cpu"`` for NumPy, a
    ``cupy.cuda.Device``, a ``torch.device``, an ``array_api_strict.Device``..."""
    if type(x) is numpy.ndarray or not is_array(x) or _library(x) == "numpy":
        return "cpu"
    return x.device


def size(x):
    """The number of elements of ``x`` (``x.size`` is a method on PyTorch tensors)."""
    return math.prod(x.shape)


def is_device_array(x):
    """True where reading ``x``'s values means waiting for an accelerator (CuPy, or a
    PyTorch tensor on CUDA or MPS): such values are never read in a hot loop."""
    if type(x) is numpy.ndarray:
        return False
    library = _library(x)
    if library == "cupy":
        return True
    if library == "torch":
        return x.device.type != "cpu"
    return False


def kind(x):
    """``"numpy"``, ``"cupy"``, or the library and device, e.g. ``"torch on cuda:0"``: what
    error messages call where an array lives."""
    if type(x) is numpy.ndarray:
        return "numpy"
    library = _library(x)
    if library in ("numpy", "cupy"):
        return library
    return f"{library} on {x.device}"


def to_numpy(x):
    """A host ``numpy.ndarray`` (or NumPy scalar) from an array of any namespace."""
    if type(x) is numpy.ndarray or not is_array(x):
        return numpy.asarray(x)
    library = _library(x)
    if library == "numpy":  # a subclass, or a NumPy scalar
        return numpy.asarray(x)
    if library == "cupy":
        return x.get()
    if library == "torch":
        return x.detach().cpu().numpy()
    try:
        return numpy.from_dlpack(x)
    except Exception:  # not on the CPU: move it there through the standard's to_device
        info = array_namespace(x).__array_namespace_info__()
        return numpy.from_dlpack(x.to_device(info.default_device()))


def check_same_backend(where, **arrays):
    """Raise ``TypeError`` naming ``where`` if the arrays mix libraries or devices."""
    first = None
    for a in arrays.values():  # the common case, all NumPy, without building a report
        if first is None:
            first = type(a)
        elif type(a) is not first:
            break
    else:  # one type: only a library whose arrays of one type span devices needs a look
        if first is None or _library_of_type(first) in ("numpy", "cupy"):
            return
    kinds = {name: kind(a) for name, a in arrays.items() if is_array(a)}
    if len(set(kinds.values())) > 1:
        detail = ", ".join(f"{name} is {k}" for name, k in kinds.items())
        raise TypeError(f"{where}: arrays from different backends ({detail}); move them "
                        f"to one backend first (backends.to_device / backends.to_numpy)")


def host_rng(seed=None):
    """A seeded NumPy generator on the host.

    Parameters are drawn here and then sent to the backend, so the same seed
    gives the same network on every backend.
    """
    return numpy.random.default_rng(seed)


def dtype_name(dtype):
    """``"float32"``, ``"int64"``...: a dtype's name whatever its library (NumPy's
    ``.name``, ``torch.float32``, ``array_api_strict.float32``)."""
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    return str(dtype).rsplit(".", 1)[-1]


def dtype_kind(dtype):
    """NumPy's one-letter kind of any library's dtype: ``"f"``, ``"i"``, ``"u"``, ``"b"``, ``"c"``."""
    kind = getattr(dtype, "kind", None)
    if isinstance(kind, str):
        return kind
    name = dtype_name(dtype)
    for prefix, letter in (("bool", "b"), ("uint", "u"), ("int", "i"), ("float", "f"),
                           ("complex", "c")):
        if name.startswith(prefix):
            return letter
    return "O"


def on_device_of(xp, like):
    """Keyword arguments that create an array on ``like``'s device: ``{"device": ...}``,
    or none for NumPy's module and CuPy's own (which takes no ``device=``: it creates on
    its current device). array-api-compat's CuPy namespace takes one, as the standard's."""
    if xp is numpy or getattr(xp, "__name__", "") == "cupy":
        return {}
    return {"device": device_of(like)}


def copy(x):
    """A copy of ``x`` in its own namespace."""
    if hasattr(x, "copy") and _library(x) in ("numpy", "cupy"):
        return x.copy()
    return array_namespace(x).asarray(x, copy=True)
