"""NCCL between GPUs, one process each: the ranks' flat buffers summed on the GPUs.

The device counterpart of :mod:`backends.host.buffers`. Each rank's buffer is
all-gathered into a ``(ranks, n)`` block on every GPU and the rows are added left to
right, in rank order, on the current stream: the sum MPI's host path computes, the same
bits on every rank and in every run, whichever ring or tree NCCL picks (its all-reduce
adds in an order that depends on the topology and on how it cuts the buffer). The
price is traffic: each GPU receives (ranks - 1) buffers rather than about two, which
for xpnet's networks (0.2-2 MB of gradients a step) is microseconds on NVLink.

Nothing here waits for the GPU: the all-gather and the adds are queued on the stream
the step runs on, so the host never reads the gradients.
"""

import cupy
from cupy.cuda import nccl

from backends.arrays import sum_in_rank_order

if not getattr(nccl, "available", False):  # CuPy imports the module even without NCCL
    raise ImportError("CuPy finds no NCCL library (pip install nvidia-nccl-cu12, or "
                      "python -m cupyx.tools.install_library --library nccl)")

_TYPES = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}


def version():
    """NCCL's version as text, ``"2.27.3"``."""
    code = nccl.get_version()
    major, rest = divmod(code, 10000) if code >= 10000 else divmod(code, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def unique_id():
    """A new communicator's id, made on one rank and sent to the others (over MPI)."""
    return nccl.get_unique_id()


class RankOrderSum:
    """``all_reduce(flat)``: the sum over ``size`` ranks of each rank's 1-D ``flat``, added
    in rank order on this rank's GPU (``device``)."""

    def __init__(self, size, rank, uid, device):
        self.size, self.rank, self.device = size, rank, device
        with device:  # the id as unique_id made it: bytes in CuPy 14, a tuple before
            self.comm = nccl.NcclCommunicator(size, uid, rank)

    def all_reduce(self, flat):
        kind = _TYPES.get(flat.dtype.name)
        if kind is None:
            raise TypeError(f"NCCL sum: gradients are float32 or float64, got {flat.dtype}")
        flat = cupy.ascontiguousarray(flat)
        gathered = cupy.empty((self.size, flat.size), dtype=flat.dtype)
        stream = cupy.cuda.get_current_stream()
        self.comm.allGather(flat.data.ptr, gathered.data.ptr, flat.size, kind, stream.ptr)
        return sum_in_rank_order(gathered)

    def close(self):
        """Free NCCL's resources (a process ending frees them too)."""
        self.comm.destroy()
