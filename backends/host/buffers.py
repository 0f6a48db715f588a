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
    """``x`` as a C-ordered NumPy array MPI can read."""
    return numpy.ascontiguousarray(REGISTRY.to_numpy(x))


def gather_buffer(ranks, part):
    """Room for one ``part`` from each of ``ranks`` ranks."""
    return numpy.empty((ranks,) + part.shape, dtype=part.dtype)

