"""Data-parallel training across processes: the world, and the communicator that joins it.

``mpiexec -n 4 python scripts/train_convnet.py ...`` starts four processes;
each calls :func:`world` and finds its ``rank``, the ``size`` of the world,
its ``local_rank`` on its machine and a :class:`Communicator` over MPI
(mpi4py). A plain ``python ...`` is a world of one and imports no MPI at
all. The Trainer then trains exactly what one process trains: every rank
draws the same epoch order, takes its shard of each global batch, and the
ranks' gradients are summed (see :class:`framework.trainer.Trainer`).

The transport is MPI's, not ours, and this module is host-side I/O: it
hands MPI host (NumPy) buffers. The gradients travel as one flat buffer a
step, all-reduced by :meth:`Communicator.all_reduce`: every element is the
sum of the ranks' values added in rank order, on every rank, so the sum is
the same everywhere and does not depend on how MPI cuts or orders its
messages. In a small world each rank gathers every rank's buffer and adds
them; in a larger one each rank receives every rank's part of one chunk of
the buffer, adds those, and the summed chunks are gathered: about two
buffers a rank whatever the world's size, the same bits (docs/distributed.md
has the cost per step against N). CuPy arrays, one GPU a rank, go GPU to GPU
over NCCL (:class:`NcclCommunicator`, its id sent over MPI, the same
rank-order sum on the devices); other device arrays, and GPUs that ranks
share, go through the host (a copy each way). A rank that raises ends the
whole job (:meth:`Communicator.abort`), so no rank waits forever in a
collective.
"""

import socket
import sys
import time
import traceback

import array_api_extra as xpx

import backends
from backends import mpi_env
from backends.arrays import sum_in_rank_order
from backends.host import buffers
from backends.registry import REGISTRY

ABORT_GRACE_S = 0.5  # for the launcher to pass on a failing rank's output
INSTALL = "pip install 'xpnet[distributed]' (mpi4py and MPICH)"


class Done:
    """A collective already complete: :meth:`wait` gives its result."""

    def __init__(self, value):
        self.value = value

    def wait(self):
        return self.value


class Communicator:
    """A world of one: every collective is the identity."""

    name = "none (one process)"
    size = 1

    def all_reduce(self, flat):
        """The sum over the ranks of a 1-D array (each rank's own), every element added in
        rank order: the same bits on every rank. A new array of ``flat``'s library."""
        return flat

    def sum_count(self, count):
        """The sum over the ranks of a Python int (a count of correct answers)."""
        return int(count)

    def largest(self, value):
        """The largest of the ranks' Python ints (every rank gets the same answer)."""
        return int(value)

    def start_largest(self, value):
        """:meth:`largest`, started and left to complete while the caller goes on: an
        object whose ``wait()`` gives the answer. Every rank starts them in one order."""
        return Done(int(value))

    def same(self, values):
        """Whether every rank holds the same bytes in ``values`` (any array)."""
        return True

    def broadcast(self, value):
        """Rank 0's ``value`` (a picklable Python value), on every rank."""
        return value

    def everyone(self, value):
        """Each rank's ``value`` (picklable), in rank order, on every rank."""
        return [value]

    def broadcast_arrays(self, arrays):
        """Rank 0's values of ``arrays`` (name -> array, any backend) copied into every
        rank's arrays, in place; returns them by name (JAX's immutable arrays: new ones,
        which the caller puts back)."""
        return dict(arrays)

    def barrier(self):
        pass

    def abort(self, code=1):
        raise SystemExit(code)


class MpiRequest:
    """A non-blocking reduction of one int64 under way: :meth:`wait` completes it."""

    def __init__(self, request, result):
        self.request, self.result = request, result  # the buffer lives until the wait

    def wait(self):
        self.request.Wait()
        return int(self.result[0])


class MpiCommunicator(Communicator):
    """MPI through mpi4py: NumPy arrays by their buffers, device arrays through the host.

    ``gather_up_to``: the largest world whose all-reduce gathers every rank's whole
    buffer (each rank receives ``size - 1`` buffers); beyond it, the chunked form (about
    two buffers a rank). Both add each element's terms in rank order: the same bits.
    ``sent`` counts the elements this rank has sent in all-reduces (for the docs' traffic
    figures)."""

    gather_up_to = 2

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.size, self.rank = comm.size, comm.rank
        self.name = f"MPI ({' '.join(MPI.Get_library_version().splitlines()[0].split())})"
        self.sent = 0

    def all_reduce(self, flat):
        host = buffers.host_buffer(flat)
        if self.size <= self.gather_up_to or host.size < self.size:
            total = self._gathered_sum(host)
        else:
            total = self._chunked_sum(host)
        return backends.backend_of(flat).asarray(total, dtype=flat.dtype)

    def _gathered_sum(self, host):
        """Every rank's whole buffer, gathered and added in rank order."""
        gathered = buffers.gather_buffer(self.size, host)
        self.comm.Allgather(host, gathered)
        self.sent += host.size * (self.size - 1)
        return sum_in_rank_order(gathered)

    def _chunked_sum(self, host):
        """The buffer cut into one chunk a rank: each rank receives every rank's part of its
        own chunk (an all-to-all), adds them in rank order, and the summed chunks are
        gathered on every rank."""
        n, size, rank = host.size, self.size, self.rank
        bounds = [n * r // size for r in range(size + 1)]
        counts = [bounds[r + 1] - bounds[r] for r in range(size)]
        mine = counts[rank]
        parts, total = buffers.chunk_buffers(size, mine, host)
        self.comm.Alltoallv([host, (counts, bounds[:-1])],
                            [parts, ([mine] * size, [mine * r for r in range(size)])])
        chunk = buffers.contiguous(sum_in_rank_order(parts))
        self.comm.Allgatherv(chunk, [total, (counts, bounds[:-1])])
        self.sent += (n - mine) + mine * (size - 1)
        return total

    def sum_count(self, count):
        return int(self.comm.allreduce(int(count), op=self.MPI.SUM))

    def largest(self, value):
        return int(self.comm.allreduce(int(value), op=self.MPI.MAX))

    def start_largest(self, value):
        mine, result = buffers.int64_pair(value)
        request = self.comm.Iallreduce(mine, result, op=self.MPI.MAX)
        return MpiRequest(request, result)

    def same(self, values):
        import hashlib
        digest = hashlib.sha256(buffers.host_buffer(values).tobytes())
        return len(set(self.everyone(digest.hexdigest()))) == 1

    def broadcast(self, value):
        return self.comm.bcast(value, root=0)

    def everyone(self, value):
        return self.comm.allgather(value)

    def broadcast_arrays(self, arrays):
        out = {}
        for name, a in arrays.items():  # every rank names the same arrays in the same order
            host = buffers.host_buffer(a)  # a itself for a C-ordered NumPy array
            self.comm.Bcast(host, root=0)
            if host is not a:  # in place (JAX: a new array)
                a = xpx.at(a)[...].set(backends.backend_of(a).asarray(host, dtype=a.dtype))
            out[name] = a
        return out

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        sys.stdout.flush()
        sys.stderr.flush()
        # the launcher forwards our output through a pipe and kills every process on an
        # abort: without a moment to read it, the failing rank's traceback can be lost
        time.sleep(ABORT_GRACE_S)
        self.comm.Abort(code)


class NcclCommunicator(MpiCommunicator):
    """CuPy arrays GPU to GPU over NCCL (:mod:`backends.cuda.nccl`), queued on the step's
    stream with no host copy; counts, flags and digests, which live on the host, over
    MPI, which also launched the job and carried NCCL's id to every rank."""

    def __init__(self, comm, device):
        super().__init__(comm)
        from backends.cuda import nccl
        uid = comm.bcast(nccl.unique_id() if comm.rank == 0 else None, root=0)
        self.device_sum = nccl.RankOrderSum(comm.size, comm.rank, uid, device)
        self.name = f"NCCL {nccl.version()} (launched over {self.name})"

    def all_reduce(self, flat):
        if backends.is_cupy_array(flat):
            return self.device_sum.all_reduce(flat)
        return super().all_reduce(flat)


def _nccl_unusable():
    """Why this process cannot use NCCL (CuPy without it), or None."""
    try:
        from backends.cuda import nccl  # noqa: F401
    except Exception as e:  # CuPy built without NCCL, or its library missing
        return f"NCCL does not load here ({type(e).__name__}: {e})"
    return None


def gpu_transport(everyone):
    """Why the ranks cannot sum over NCCL, or None where they can: ``everyone`` holds each
    rank's ``(host, GPU bus id, why NCCL does not load or None)``, in rank order."""
    missing = next(((r, why) for r, (_, _, why) in enumerate(everyone) if why), None)
    if missing is not None:
        return f"rank {missing[0]}: {missing[1]}"
    gpus = [(host, bus) for host, bus, _ in everyone]
    for rank, gpu in enumerate(gpus):
        first = gpus.index(gpu)
        if first != rank:
            return (f"ranks {first} and {rank} share one GPU ({gpu[1]} on {gpu[0]}), which "
                    f"NCCL does not allow")
    return None


class World:
    """This process's place: ``rank`` of ``size``, ``local_rank`` on its machine, and the
    ``communicator`` that joins the ranks."""

    def __init__(self, rank, size, local_rank, communicator):
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.communicator = communicator
        self._device_communicators = {}  # GPU id -> (communicator, why): one NCCL comm each

    @property
    def is_root(self):
        """Rank 0: the one that prints, plots and writes checkpoints."""
        return self.rank == 0

    def communicator_for(self, backend):
        """``(communicator, why)`` for a network on ``backend``: NCCL between CuPy GPUs,
        one a rank; MPI through the host for the CPU, other device arrays, or where
        NCCL is missing or ranks share a GPU. Collective: every rank calls it and all
        reach the same choice."""
        if self.size == 1:
            return self.communicator, "one process"
        if backend.name != "cupy":
            where = "in host memory" if backend.host_buffers else "through the host"
            return self.communicator, f"the gradients are summed {where}"
        device = backend.device if backend.device is not None else \
            backend.xp.cuda.Device()
        if device.id not in self._device_communicators:  # every rank asks in the same order
            self._device_communicators[device.id] = self._choose_for_gpu(device)
        return self._device_communicators[device.id]

    def _choose_for_gpu(self, device):
        mine = (socket.gethostname(), str(device.pci_bus_id), _nccl_unusable())
        why_not = gpu_transport(self.communicator.comm.allgather(mine))
        if why_not is None:
            return NcclCommunicator(self.communicator.comm, device), \
                "the gradients are summed on the GPUs"
        return self.communicator, f"the gradients are summed through the host: {why_not}"

    def shard(self, n):
        """``(lo, hi)``: this rank's part of ``n`` samples; parts differ by at most one
        (16, 17, 17 for 50 on 3 ranks), in rank order."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def __repr__(self):
        return (f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, "
                f"communicator={self.communicator.name!r})")


def world(environ=None):
    """The world this process is in, made once: a world of one unless an MPI launcher
    (``mpiexec``) started more than one process. Kept in the registry, with the rest of
    xpnet's process-wide state; ``environ`` (a mapping standing for ``os.environ``) makes a
    world from it without keeping it."""
    if environ is None and REGISTRY.world is not None:
        return REGISTRY.world
    launched = mpi_env.launched(environ)
    if launched is None or launched.size == 1:
        made = World(0, 1, 0, Communicator())
    else:
        try:
            from mpi4py import MPI
        except ImportError:
            raise RuntimeError(f"this process was started by an MPI launcher with "
                               f"{launched.size} processes, but mpi4py is not installed here; "
                               f"{INSTALL}") from None
        comm = MPI.COMM_WORLD
        local = comm.Split_type(MPI.COMM_TYPE_SHARED).rank
        made = World(comm.rank, comm.size, local, MpiCommunicator(comm))
    if environ is None:
        REGISTRY.world = made
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
