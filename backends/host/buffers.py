"""Host memory for transports that read arrays by address (MPI's buffer calls).

MPI moves bytes from host memory: an array of any backend goes there as a C-ordered
NumPy copy (no copy for a C-ordered NumPy array), and the ranks' parts arrive in one
``(ranks, *shape)`` block, summed in rank order
(:func:`backends.arrays.sum_in_rank_order`) so that every rank, in every run, holds the
same bits.
"""

import numpy

from backends.registry import REGISTRY


def host_buffer(x):
    """``x`` as a C-ordered NumPy array MPI can read and write into (a copy where the host
    view of ``x`` is read-only: JAX's arrays)."""
    host = numpy.ascontiguousarray(REGISTRY.to_numpy(x))
    return host if host.flags.writeable else host.copy()


def gather_buffer(ranks, part):
    """Room for one ``part`` from each of ``ranks`` ranks."""
    return numpy.empty((ranks,) + part.shape, dtype=part.dtype)


def chunk_buffers(ranks, mine, like):
    """Room for every rank's part of this rank's chunk (``(ranks, mine)``) and for the whole
    summed buffer (``like``'s shape): the chunked all-reduce's two receive buffers."""
    return numpy.empty((ranks, mine), dtype=like.dtype), numpy.empty_like(like)


def contiguous(x):
    """``x`` (a host array) C-ordered, as a send buffer."""
    return numpy.ascontiguousarray(x)


def int64_pair(value):
    """A one-element int64 buffer holding ``value`` and one for a result: a non-blocking
    reduction's send and receive buffers."""
    return numpy.array([int(value)], dtype=numpy.int64), numpy.empty(1, dtype=numpy.int64)
