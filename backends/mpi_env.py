"""What an MPI launcher told this process, read from its environment: which of how many
processes it is, on its machine and in all, and so which GPU is its own.

``mpiexec -n 4 python train.py`` starts four processes and sets variables in each
(MPICH's hydra, Open MPI and PMIx name them differently). Reading them needs no MPI,
so the default device can be chosen before any array exists: each process of a
data-parallel job takes the GPU of its rank on its machine, as ``torch.cuda.set_device``
is used under PyTorch's DDP. The communicator itself is :mod:`framework.distributed`'s.
"""

import os

# (size, rank, local rank, local size) as each launcher names them.
_LAUNCHERS = (("PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),  # MPICH's hydra
              ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
               "OMPI_COMM_WORLD_LOCAL_SIZE"),
              ("PMIX_SIZE", "PMIX_RANK", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"))


# the prefixes of every variable above: a child whose environment keeps them takes itself
# for a rank of its parent's job
_PREFIXES = ("PMI_", "MPI_LOCAL", "OMPI_", "PMIX_")


def outside_launcher(environ=None):
    """``environ`` (default ``os.environ``) less every launcher's variables: the
    environment for a child that is not a rank of this job (one that starts an
    ``mpiexec`` of its own, say)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if not k.startswith(_PREFIXES)}


class Launch:
    """``rank`` of ``size`` processes; ``local_rank`` of ``local_size`` on this machine."""

    def __init__(self, size, rank, local_rank, local_size):
        self.size, self.rank = size, rank
        self.local_rank, self.local_size = local_rank, local_size

    def __repr__(self):
        return (f"Launch(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, "
                f"local_size={self.local_size})")


def launched(environ=None):
    """The :class:`Launch` an MPI launcher described, or None outside one (a plain
    ``python``). Where a launcher names no local rank, every process is taken to be on
    one machine."""
    env = os.environ if environ is None else environ
    for size, rank, local_rank, local_size in _LAUNCHERS:
        if env.get(size):
            n, r = int(env[size]), int(env.get(rank, 0))
            return Launch(n, r, int(env.get(local_rank, r)), int(env.get(local_size, n)))
    return None


def gpu_index(launch, count, library="CuPy"):
    """The GPU a process of a data-parallel job takes: its local rank's. More processes on
    a machine than it has GPUs is an error saying what to do instead, never a silent
    doubling up (two ranks on one GPU halve its speed and cannot use NCCL)."""
    if count < 1:
        raise ValueError(f"{library} sees no GPU on this machine")
    if launch.local_size > count:
        raise ValueError(
            f"{launch.local_size} processes were started on this machine but it has {count} "
            f"GPU{'s' if count > 1 else ''}: each process takes the GPU of its local rank. "
            f"Start at most {count} a machine (mpiexec -n {count}, or -ppn {count} with a "
            f"host file), or let every process share one GPU by naming it "
            f"(XPNET_DEVICE=cuda:0; their gradients then travel through the host over MPI)")
    return launch.local_rank


def launched_gpu(count, library="CuPy", environ=None):
    """The GPU index a process of a data-parallel job takes (its local rank's), or None
    for a process on its own (or alone in its job); ``ValueError`` where its machine has
    too few GPUs (:func:`gpu_index`)."""
    job = launched(environ)
    if job is None or job.size == 1:
        return None
    return gpu_index(job, count, library)
