"""Data-parallel training across processes: the world, and the communicator that joins it.

``mpiexec -n 4 python scripts/train_convnet.py ...`` starts four processes;
each calls :func:`world` and finds its ``rank``, the ``size`` of the world,
its ``local_rank`` on its machine and a :class:`Communicator` over MPI
(mpi4py). A plain ``python ...`` is a world of one and imports no MPI at
all. The Trainer then trains exactly what one process trains: every rank
draws the same epoch order, takes its shard of each global batch, and the
ranks' gradients are summed (see :class:`framework.trainer.Trainer`).

The transport is MPI's, not ours, and this module is host-side I/O: it
hands MPI host (NumPy) buffers. Gradients travel as one flat buffer a
step; each rank's buffer is gathered and the buffers are added in rank
order on every rank, so the sum is the same everywhere and does not depend
on how MPI cuts or orders its messages. Device arrays go through the host
(a copy each way). A rank that raises ends the whole job
(:meth:`Communicator.abort`), so no rank waits forever in a collective.
"""

import os
import sys
import traceback

import backends
from backends.host import buffers

# Variables an MPI launcher sets in every process it starts: (size, rank, local rank).
_LAUNCHERS = (("PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"),  # MPICH's hydra
              ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"),
              ("PMIX_SIZE", "PMIX_RANK", "PMIX_LOCAL_RANK"))
INSTALL = "pip install 'xpnet[distributed]' (mpi4py and MPICH)"

_world = None


class Communicator:
    """A world of one: every collective is the identity."""

    name = "none (one process)"

    def sum_flat(self, flat):
        """The sum over the ranks of a 1-D array (each rank's own), added in rank order."""
        return flat

    def sum_count(self, count):
        """The sum over the ranks of a Python int (a count of correct answers)."""
        return int(count)

    def any(self, flag):
        """Whether ``flag`` is true on any rank (every rank gets the same answer)."""
        return bool(flag)

    def same(self, values):
        """Whether every rank holds the same bytes in ``values`` (any array)."""
        return True

    def barrier(self):
        pass

    def abort(self, code=1):
        raise SystemExit(code)


class MpiCommunicator(Communicator):
    """MPI through mpi4py: NumPy arrays by their buffers, device arrays through the host."""

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.name = f"MPI ({MPI.Get_library_version().splitlines()[0].strip()})"

    def sum_flat(self, flat):
        host = buffers.host_buffer(flat)
        gathered = buffers.gather_buffer(self.comm.size, host)
        self.comm.Allgather(host, gathered)
        total = buffers.sum_in_rank_order(gathered)
        return backends.backend_of(flat).asarray(total, dtype=flat.dtype)

    def sum_count(self, count):
        return int(self.comm.allreduce(int(count), op=self.MPI.SUM))

    def any(self, flag):
        return bool(self.comm.allreduce(int(bool(flag)), op=self.MPI.MAX))

    def same(self, values):
        import hashlib
        digest = hashlib.sha256(buffers.host_buffer(values).tobytes())
        return len(set(self.comm.allgather(digest.hexdigest()))) == 1

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        sys.stderr.flush()
        self.comm.Abort(code)


class World:
    """This process's place: ``rank`` of ``size``, ``local_rank`` on its machine, and the
    ``communicator`` that joins the ranks."""

    def __init__(self, rank, size, local_rank, communicator):
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.communicator = communicator

    @property
    def is_root(self):
        """Rank 0: the one that prints, plots and writes checkpoints."""
        return self.rank == 0

    def shard(self, n):
        """``(lo, hi)``: this rank's part of ``n`` samples; parts differ by at most one
        (16, 17, 17 for 50 on 3 ranks), in rank order."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def __repr__(self):
        return (f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, "
                f"communicator={self.communicator.name!r})")


def _launched(environ):
    """``(size, rank, local_rank)`` an MPI launcher set, or None outside one."""
    for size, rank, local in _LAUNCHERS:
        if environ.get(size):
            return int(environ[size]), int(environ.get(rank, 0)), \
                int(environ.get(local, environ.get(rank, 0)))
    return None


def world(environ=None):
    """The world this process is in, made once: a world of one unless an MPI launcher
    (``mpiexec``) started more than one process."""
    global _world
    if _world is not None and environ is None:
        return _world
    launched = _launched(os.environ if environ is None else environ)
    if launched is None or launched[0] == 1:
        made = World(0, 1, 0, Communicator())
    else:
        try:
            from mpi4py import MPI
        except ImportError:
            raise RuntimeError(f"this process was started by an MPI launcher with "
                               f"{launched[0]} processes, but mpi4py is not installed here; "
                               f"{INSTALL}") from None
        comm = MPI.COMM_WORLD
        local = comm.Split_type(MPI.COMM_TYPE_SHARED).rank
        made = World(comm.rank, comm.size, local, MpiCommunicator(comm))
    if environ is None:
        _world = made
    return made


class abort_on_error:
    """Around a data-parallel run: an exception on one rank prints its traceback (naming
    the rank) and ends every rank, so none waits forever in a collective. Interrupts
    (Ctrl-C, SIGTERM) are agreed on by all ranks and pass through."""

    def __init__(self, world):
        self.world = world

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is None or self.world.size == 1 or \
                isinstance(error, (KeyboardInterrupt, FloatingPointError)):
            return False  # none, or one every rank raises at the same step (a global loss)
        sys.stderr.write(f"rank {self.world.rank} of {self.world.size} failed; ending the "
                         f"job:\n" + "".join(traceback.format_exception(kind, error, tb)))
        self.world.communicator.abort(1)
        return False
