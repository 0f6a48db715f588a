"""backends/mpi_env.py: what each MPI launcher tells a process, and which GPU it takes."""

import pytest

from backends import mpi_env


@pytest.mark.parametrize("environ, want", [
    ({"PMI_SIZE": "4", "PMI_RANK": "3", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"},
     (4, 3, 1, 2)),  # MPICH's hydra, two machines of two
    ({"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "5",
      "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, (8, 5, 1, 4)),
    ({"PMIX_SIZE": "2", "PMIX_RANK": "1", "PMIX_LOCAL_RANK": "1", "PMIX_LOCAL_SIZE": "2"},
     (2, 1, 1, 2)),
    ({"PMI_SIZE": "3", "PMI_RANK": "2"}, (3, 2, 2, 3)),  # no local names: one machine
])
def test_each_launcher_is_read(environ, want):
    job = mpi_env.launched(environ)
    assert (job.size, job.rank, job.local_rank, job.local_size) == want


def test_a_plain_process_was_not_launched():
    assert mpi_env.launched({}) is None
    assert mpi_env.launched({"PMI_SIZE": ""}) is None


def test_each_process_takes_its_local_ranks_gpu():
    job = mpi_env.Launch(size=8, rank=5, local_rank=1, local_size=4)
    assert mpi_env.gpu_index(job, 4) == 1
    assert mpi_env.gpu_index(job, 8) == 1  # fewer processes than GPUs: the first ones


def test_a_process_alone_in_its_job_keeps_the_default_gpu():
    """``mpiexec -n 1`` is one process as a plain ``python`` is: no GPU is chosen for it
    (its library's current one stays), and a machine without one is no error here."""
    alone = {"PMI_SIZE": "1", "PMI_RANK": "0"}
    assert mpi_env.launched_gpu(0, environ=alone) is None
    assert mpi_env.launched_gpu(2, environ={}) is None
    two = {"PMI_SIZE": "2", "PMI_RANK": "1"}
    assert mpi_env.launched_gpu(2, environ=two) == 1
    with pytest.raises(ValueError, match="sees no GPU"):
        mpi_env.launched_gpu(0, environ=two)


def test_more_processes_than_gpus_says_what_to_do():
    job = mpi_env.Launch(size=3, rank=2, local_rank=2, local_size=3)
    with pytest.raises(ValueError) as e:
        mpi_env.gpu_index(job, 2)
    text = str(e.value)
    assert "3 processes were started on this machine but it has 2 GPUs" in text
    assert "mpiexec -n 2" in text and "XPNET_DEVICE=cuda:0" in text
    with pytest.raises(ValueError, match="sees no GPU"):
        mpi_env.gpu_index(job, 0)


def test_a_childs_environment_outside_the_launcher_names_no_job():
    env = {"PMI_SIZE": "2", "PMI_RANK": "1", "MPI_LOCALRANKID": "1", "OMPI_COMM_WORLD_SIZE": "2",
           "PMIX_RANK": "0", "PATH": "/bin", "XPNET_BACKEND": "numpy"}
    outside = mpi_env.outside_launcher(env)
    assert outside == {"PATH": "/bin", "XPNET_BACKEND": "numpy"}
    assert mpi_env.launched(outside) is None
