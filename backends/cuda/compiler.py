"""The CUDA kernels of :mod:`backends.cuda.sources`, compiled by CuPy and kept, privately.

A :class:`KernelCache` belongs to the operations that launch its kernels
(:class:`backends.cuda.ops.CupyOps`): each kernel is built once per source, name and
types (NVRTC, through ``cupy.RawKernel``) and kept there; nothing is shared through the
module or read from a folder others can write (CuPy keeps its own compiled binaries in
its cache folder, ``CUPY_CACHE_DIR``).
"""

import cupy

from backends.cuda.sources import source, with_defines


class KernelCache:
    """``cupy.RawKernel`` objects built on first use, by file, name and ``#define`` types."""

    def __init__(self):
        self._kernels = {}

    def get(self, file, name, **types):
        """The kernel ``name`` of ``kernels/<file>`` with each ``#define`` of ``types``
        (``T="float"``...)."""
        key = (file, name) + tuple(sorted(types.items()))
        found = self._kernels.get(key)
        if found is None:
            found = self._kernels[key] = cupy.RawKernel(with_defines(source(file), **types),
                                                       name)
        return found
