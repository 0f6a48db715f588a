"""Kernels compiled by CuPy from :mod:`backends.cuda.sources`, once per source, name and types."""

import cupy

from backends.cuda.sources import source, with_defines

_cache = {}


def kernel(file, name, **types):
    """The ``cupy.RawKernel`` ``name`` of ``kernels/<file>`` with each ``#define`` of ``types``
    (``T="float"``...), built on first use and kept."""
    key = (file, name) + tuple(sorted(types.items()))
    found = _cache.get(key)
    if found is None:
        found = _cache[key] = cupy.RawKernel(with_defines(source(file), **types), name)
    return found
