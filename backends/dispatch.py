"""``ops_for(x)``: the :class:`backends.ops.Ops` for the library an array lives in.

The one place that knows the wings: NumPy arrays get the host's
:class:`backends.host.ops.HostOps`, CuPy arrays the GPU's
:class:`backends.cuda.ops.CupyOps`. Each is made on first use, so CuPy is
only imported where a CuPy array exists.
"""

import numpy

from backends.arrays import is_device_array

_host = None
_cuda = None


def ops_for(x):
    """The operations for the backend ``x`` lives on (CuPy's fused kernels for a CuPy array)."""
    global _host, _cuda
    if _host is not None and type(x) is numpy.ndarray:
        return _host  # the hot path on the CPU: a dozen calls a step
    if is_device_array(x):
        if _cuda is None:
            from backends.cuda.ops import CupyOps
            _cuda = CupyOps()
        return _cuda
    if _host is None:
        from backends.host.ops import HostOps
        _host = HostOps(numpy)
    return _host
