"""backends/host/threads.py: how many cores a process takes, alone and in a launched job."""

import os

import pytest

from backends.host import threads
from backends.settings import Settings

ALLOWED = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_a_process_alone_takes_the_cores_it_may_run_on():
    assert threads.cores_of_this_process({}) == ALLOWED
    assert threads.cores_of_this_process({"PMI_SIZE": "4", "PMI_RANK": "0",
                                          "MPI_LOCALRANKID": "0",
                                          "MPI_LOCALNRANKS": "1"}) == ALLOWED


@pytest.mark.parametrize("local", [2, 3, 64])
def test_a_process_of_a_job_takes_its_share_of_the_machine(local):
    environ = {"OMPI_COMM_WORLD_SIZE": str(local), "OMPI_COMM_WORLD_RANK": "1",
               "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": str(local)}
    assert threads.cores_of_this_process(environ) == max(1, ALLOWED // local)
    assert threads.host_threads(Settings(), environ) == (
        1 if threads.blas_controller() is None else min(max(1, ALLOWED // local), 8))


def test_outside_a_job_cpu_share_leaves_blas_alone(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with threads.cpu_share(Settings()) as limiter:
        assert limiter is None  # a null context: nothing was limited


def test_a_job_of_one_process_on_this_machine_leaves_blas_alone(monkeypatch):
    """Launched, but alone on its machine: the whole machine is its share, and not even the
    loaded libraries are scanned."""
    monkeypatch.setattr(threads, "_all_controller", lambda: pytest.fail("libraries scanned"))
    for name, value in {"PMI_SIZE": "2", "PMI_RANK": "0", "MPI_LOCALRANKID": "0",
                        "MPI_LOCALNRANKS": "1"}.items():
        monkeypatch.setenv(name, value)
    with threads.cpu_share(Settings()) as limiter:
        assert limiter is None


def test_the_default_thread_count_stops_at_eight_cores(monkeypatch):
    """Memory-bound passes stop scaling well before: a 64-core machine's process takes 8."""
    if threads.blas_controller() is None:
        pytest.skip("no BLAS that threadpoolctl can set: one thread whatever the cores")
    monkeypatch.setattr(threads, "cores_of_this_process", lambda environ=None: 64)
    assert threads.host_threads(Settings(), {}) == threads.MAX_DEFAULT_THREADS == 8
    monkeypatch.setattr(threads, "cores_of_this_process", lambda environ=None: 5)
    assert threads.host_threads(Settings(), {}) == 5


def test_a_failing_part_returns_only_once_every_other_part_has_finished():
    """The calling thread's part raised: its error comes back only after the other parts
    stopped writing (the caller's arrays may be freed or reused at once)."""
    import time
    finished = []

    def work(lo, hi):
        if lo == 0:
            raise RuntimeError("the first part failed")
        time.sleep(0.3)
        finished.append((lo, hi))
    with pytest.raises(RuntimeError, match="the first part failed"):
        threads.Pool(2).each_part(work, 2, nbytes=10**12)
    assert finished == [(1, 2)]


def test_in_a_job_cpu_share_lowers_pools_to_the_share_and_never_raises_one(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if threads.blas_controller() is None:
        pytest.skip("no BLAS that threadpoolctl can set")
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setenv("MPI_LOCALRANKID", "0")
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")

    def blas():
        return {p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas"}
    monkeypatch.setattr(threads, "cores_of_this_process", lambda environ=None: 3)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with threads.cpu_share(Settings()):
            assert blas() == {2}  # a share of 3 raises nobody's 2
        monkeypatch.setattr(threads, "cores_of_this_process", lambda environ=None: 1)
        with threads.cpu_share(Settings()):
            assert blas() == {1}
        assert blas() == {2}  # given back
        monkeypatch.setattr(threads, "cores_of_this_process", lambda environ=None: 3)
        # the user's word (XPNET_HOST_THREADS) over the division
        with threads.cpu_share(Settings.read({"XPNET_HOST_THREADS": "1"})):
            assert blas() == {1}


@pytest.mark.parametrize("n, nbytes, macs, parts", [
    (100, 0, 0, 1),                                             # nothing worth a hand-over
    (100, threads.MIN_PART_BYTES - 1, threads.MIN_PART_MACS - 1, 1),  # under a part's worth
    (100, 3 * threads.MIN_PART_BYTES, 0, 3),                     # memory-bound: by its bytes
    (100, 0, 2 * threads.MIN_PART_MACS, 2),                      # compute-bound: by its work
    (100, 10**12, 0, 4),                                         # never more than the threads
    (3, 10**12, 10**12, 3),                                      # nor than the samples
])
def test_a_pass_is_cut_into_parts_worth_a_hand_over(n, nbytes, macs, parts):
    """A convolution moves little memory for its multiply-adds: it is split by its work."""
    assert threads.Pool(4).parts(n, nbytes=nbytes, macs=macs) == parts


def test_without_threadpoolctl_the_host_keeps_to_one_thread_and_says_so():
    """BLAS's spinning workers would take the other cores, and nothing could hold them back:
    a process where threadpoolctl cannot be imported splits nothing."""
    import subprocess
    import sys
    from tests.conftest import ROOT
    code = ("import sys; sys.modules['threadpoolctl'] = None  # as if not installed\n"
            "from backends.host import threads\n"
            "from backends.settings import Settings\n"
            "print(threads.host_threads(Settings(), {}))\n"
            "print(threads.host_threads(Settings(host_threads=3), {}))\n"
            "print(threads.blas_summary())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "1", "3", "BLAS threads left to BLAS (threadpoolctl not installed or no BLAS found)"]
