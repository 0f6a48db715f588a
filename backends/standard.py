"""The libraries reached through the Array API standard: one backend, small hooks per library.

:class:`StandardBackend` computes with the standard's reference operations
(:class:`backends.ops.StandardOps`) on the library's Array API namespace
(``array_api_compat``'s wrapper where the library needs one, else the array's own
``__array_namespace__()``), makes arrays with the standard's functions and ``device=``,
and reads them back through DLPack. A library only says what the standard cannot:
how it is imported and checked, the devices it has and how their names parse, and
where it differs (PyTorch's tensors, :mod:`backends.torch`; array-api-strict,
:mod:`backends.strict`, whose module is nothing but these hooks). An array of a
library the registry does not name gets this class itself, named after its library.
"""

import numpy

from backends.arrays import (dtype_name, extension_float, has_float64, has_int64, is_array,
                             native_order)
from backends.backend import Backend, Unusable


def narrower_integers(x, where):
    """The 32-bit type a host array of 64-bit integers ``x`` goes to a device without 64-bit
    integers as (labels, indices): ``"int32"`` (``"uint32"`` for unsigned ones), the same
    numbers; ``ValueError`` where a value does not fit."""
    narrow = numpy.dtype("int32" if x.dtype.kind == "i" else "uint32")
    limits = numpy.iinfo(narrow)
    if x.size and (int(x.min()) < limits.min or int(x.max()) > limits.max):
        raise ValueError(f"{where} has no 64-bit integers, and these {x.dtype} values "
                         f"({int(x.min())}..{int(x.max())}) do not fit in {narrow}")
    return narrow.name


class StandardBackend(Backend):
    """A library through the standard: see the module."""

    name = "standard"

    @classmethod
    def for_library(cls, library, xp):
        """This class for a library no entry names: ``library`` its top-level module's
        name, ``xp`` the namespace of its arrays."""
        return type(f"StandardBackend[{library}]", (cls,),
                    {"name": library, "modules": (library,), "_probe": (xp, None)})

    @classmethod
    def _load(cls):
        raise Unusable(f"{cls.name} is not a backend xpnet can be asked for by name; its "
                       f"arrays are computed on through the Array API standard")

    @classmethod
    def namespace_of(cls, x):
        try:
            import array_api_compat
        except ImportError:
            if hasattr(x, "__array_namespace__"):
                return x.__array_namespace__()
            raise TypeError(f"no array namespace for {type(x).__name__} arrays: install "
                            f"array-api-compat (pip install 'xpnet[torch]' for PyTorch)") from None
        return array_api_compat.array_namespace(x)

    @classmethod
    def _reference_ops(cls):
        from backends.ops import StandardOps
        return StandardOps(cls.load(), cls)

    @classmethod
    def to_numpy(cls, x):
        try:
            return numpy.from_dlpack(x)
        except Exception:  # not on the CPU: move it there through the standard's to_device
            info = cls.namespace_of(x).__array_namespace_info__()
            return numpy.from_dlpack(x.to_device(info.default_device()))

    def has_float64(self):
        return has_float64(self.xp, self.device)

    def has_int64(self):
        """Whether this device has 64-bit integers (see :func:`backends.arrays.has_int64`)."""
        return has_int64(self.xp, self.device)

    def knows_dtype(self, name):
        """Whether the library has a dtype named ``name`` here (PyTorch's ``bfloat16``)."""
        try:
            return self.dtype(name) is not None
        except (TypeError, ValueError, AttributeError):
            return False

    def dtype(self, dtype):
        if dtype is None:
            return None
        name = self._dtype_name(dtype)
        if name == "float64" and not self.has_float64():
            raise TypeError(f"{self.description} has no float64 (Apple's MPS computes in "
                            f"float32): train in float32 here, and run float64 checks such "
                            f"as gradient_check on the CPU (XPNET_DEVICE=cpu)")
        if name in ("int64", "uint64") and not self.has_int64():
            raise TypeError(f"{self.description} has no 64-bit integers, so no {name} is made "
                            f"here: use a 32-bit integer dtype ('int32', 'uint32')")
        found = getattr(self.xp, name, None)
        if found is None or isinstance(found, str) or dtype_name(found) != name:
            raise TypeError(f"{self.description} has no dtype {dtype!r}; expected a name such "
                            f"as 'float32' or 'int64', a NumPy dtype, or {self.name}'s own")
        return found

    def asarray(self, x, dtype=None):
        from backends.registry import REGISTRY  # where another library's array comes from
        if not is_array(x):
            x = numpy.asarray(x)  # Python numbers and lists: NumPy's dtypes on every backend
        elif REGISTRY.namespace(x) is not self.xp:
            x = REGISTRY.to_numpy(x)  # from another library: through the host
        x = native_order(x)
        if extension_float(x):
            # ml_dtypes' bfloat16 or float8 (JAX's arrays come to the host so), which only
            # JAX takes from NumPy: sent as float32, the same values, and made the library's
            # own type of that name where it has one (PyTorch's and JAX's bfloat16)
            if dtype is None:
                dtype = x.dtype.name if self.knows_dtype(x.dtype.name) else "float32"
            x = x.astype(numpy.float32)
        if isinstance(x, numpy.ndarray) and not x.flags.writeable:
            # a library may keep the host's memory (PyTorch's CPU tensors do) and later
            # write into it in place: memory that must not change (a file mapped read-only,
            # another library's buffer, such as a JAX array's) is copied first
            x = x.copy()
        if isinstance(x, numpy.ndarray) and dtype is None and x.dtype == numpy.float64 \
                and not self.has_float64():
            dtype = "float32"
        if isinstance(x, numpy.ndarray) and dtype is None and x.dtype.kind in "iu" and \
                x.dtype.itemsize == 8 and not self.has_int64():
            dtype = narrower_integers(x, self.description)
        return self._to_device(x, self.dtype(dtype))

    def _to_device(self, x, dtype):
        """``x`` (host data, or an array of this library) as an array of ``dtype`` (the
        library's, or None: ``x``'s own) on this backend's device: the standard's
        ``asarray(x, dtype=, device=)``."""
        return self.xp.asarray(x, dtype=dtype, device=self.device)

    def full(self, shape, value, dtype="float32"):
        return self.xp.full(shape, value, dtype=self.dtype(dtype), device=self.device)
