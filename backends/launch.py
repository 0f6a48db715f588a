"""The old import path of :mod:`backends.mpi_env` (what an MPI launcher told this process),
kept so that existing imports keep working."""

from backends.mpi_env import Launch, gpu_index, launched, outside_launcher  # noqa: F401
