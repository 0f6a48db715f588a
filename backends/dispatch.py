"""``ops_for(x)``: the :class:`backends.ops.Ops` for the library an array lives in.

The one place that knows the wings: NumPy arrays get the host's
:class:`backends.host.ops.HostOps`, CuPy arrays the GPU's
:class:`backends.cuda.ops.CupyOps`, and any other Array API namespace
(PyTorch, array-api-strict) the reference :class:`backends.ops.Ops`,
written against the standard alone. Each is made on first use, so CuPy is
only imported where a CuPy array exists.
"""

import numpy

from backends.arrays import array_namespace, is_cupy_array

_host = None
_cuda = None
_fast = True


def use_fast_paths(on=True):
    """Whether NumPy and CuPy arrays get their wings' fast paths (the default) or, with
    ``False``, the standard's reference operations like any other namespace: what the
    benchmark's ``xpnet-standard`` row measures. Returns the previous setting."""
    global _fast
    previous, _fast = _fast, bool(on)
    return previous


def ops_for(x):
    """The operations for the backend ``x`` lives on (CuPy's fused kernels for a CuPy array)."""
    global _host, _cuda
    if _host is not None and type(x) is numpy.ndarray and _fast:
        return _host  # the hot path on the CPU: a dozen calls a step
    ops = _standard_of_type.get(type(x))  # PyTorch's, array-api-strict's: already seen
    if ops is not None:
        return ops
    if not _fast and hasattr(x, "shape"):
        return _standard(array_namespace(x))
    if is_cupy_array(x):
        if _cuda is None:
            from backends.cuda.ops import CupyOps
            _cuda = CupyOps()
        return _cuda
    if type(x) is numpy.ndarray or isinstance(x, numpy.generic) or not hasattr(x, "shape"):
        if _host is None:
            from backends.host.ops import HostOps
            _host = HostOps(numpy)
        return _host
    # any other library: the standard's operations, whatever _fast says
    ops = _standard_of_type[type(x)] = _standard(array_namespace(x))
    return ops


_generic = {}
_standard_of_type = {}


def _standard(xp):
    """The reference operations for any other Array API namespace (one object each)."""
    ops = _generic.get(id(xp))
    if ops is None:
        from backends.ops import Ops
        ops = _generic[id(xp)] = Ops(xp)
    return ops
