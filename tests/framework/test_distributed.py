"""framework/distributed.py and the Trainer's data-parallel step: N processes under mpiexec
train exactly what one process trains.

The runs are real: tests/framework/distributed_job.py started by MPICH's
mpiexec (the test extra installs mpi4py and MPICH's wheel) with 2 and 3
processes (3 gives uneven shards: 3, 3, 4 of a batch of 10), compared in
float64 with the same job run as one plain process. Every run checks at
each epoch end that all ranks hold the same parameters.
"""

import ast
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from backends.registry import REGISTRY
from framework import distributed
from framework.testing.plugin import unusable
from tests.conftest import ROOT, child_env, sigint_as_at_a_terminal

JOB = os.path.join(ROOT, "tests", "framework", "distributed_job.py")
MPIEXEC = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
           or shutil.which("mpiexec"))
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
needs_mpi = pytest.mark.skipif(MPIEXEC is None or not HAVE_MPI4PY,
                               reason="no mpiexec or mpi4py here (pip install "
                                      "'xpnet[distributed]', or the test extra)")


def _cupy_gpus():
    """How many GPUs CuPy sees here (0 without CuPy or a GPU)."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() if cupy.is_available() else 0
    except Exception:
        return 0


GPUS = _cupy_gpus()
needs_gpu = pytest.mark.skipif(GPUS < 1, reason=unusable("cupy", "no GPU"))


def env(backend="numpy", device=None):
    clean = child_env(XPNET_BACKEND=backend)
    clean.pop("XPNET_DEVICE", None)
    if device:
        clean["XPNET_DEVICE"] = device
    return clean


def job(tmp_path, net, ranks=None, *args, name=None, timeout=120, check=True, **where):
    """Run the job (under mpiexec with ``ranks`` processes, else plainly) on the backend
    and device ``where`` names (NumPy by default): its .npz."""
    out = tmp_path / f"{name or net}-{ranks or 1}.npz"
    command = [sys.executable, JOB, net, str(out), *args]
    if ranks:
        command = [MPIEXEC, "-n", str(ranks)] + command
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=env(**where), cwd=tmp_path)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
        return np.load(out), done
    return None, done


def assert_same_run(got, want):
    assert sorted(got.files) == sorted(want.files)
    for key in want.files:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_a_plain_process_is_a_world_of_one():
    w = distributed.world({})
    assert (w.rank, w.size, w.local_rank, w.is_root) == (0, 1, 0, True)
    assert w.communicator.largest(0) == 0 and w.communicator.largest(15) == 15
    assert distributed.world({"PMI_SIZE": "1", "PMI_RANK": "0"}).size == 1
    kept = distributed.world()
    assert distributed.world() is kept  # made once (its GPU communicators too)
    distributed.world({"PMI_SIZE": "1", "PMI_RANK": "0"})  # a look at another environment
    assert distributed.world() is kept  # leaves the process's world as it was


def test_shards_differ_by_at_most_one_in_rank_order():
    sizes = []
    for rank in range(3):
        w = distributed.World(rank, 3, rank, distributed.Communicator())
        lo, hi = w.shard(50)
        sizes.append((lo, hi))
    assert sizes == [(0, 16), (16, 33), (33, 50)]  # 16, 17, 17: cover 50 once, in order


def test_a_graph_demanded_data_parallel_is_refused_before_training(monkeypatch):
    """``graph=True`` means the graph or an error: a data-parallel step is not recorded."""
    from framework.trainer import Trainer
    from models import TwoLayerNet
    monkeypatch.setattr(REGISTRY, "world", distributed.World(0, 2, 0, distributed.Communicator()))
    x, t = np.zeros((20, 4), np.float32), np.zeros(20, np.int64)
    with pytest.raises(ValueError, match=r"graph=True, but the step cannot be a CUDA graph: "
                                         r"a data-parallel step \(2 processes\)"):
        Trainer(TwoLayerNet(4, 3, 2), x, t, x, t, mini_batch_size=10, graph=True)


def test_a_global_batch_smaller_than_the_world_is_refused_before_training(monkeypatch):
    """``mini_batch_size`` is the global batch: one of 2 over 3 processes would leave a
    process with no sample at every step. Said at once, naming both numbers; a batch of 3
    is taken."""
    from framework.trainer import Trainer
    from models import TwoLayerNet
    monkeypatch.setattr(REGISTRY, "world", distributed.World(0, 3, 0, distributed.Communicator()))
    x, t = np.zeros((20, 4), np.float32), np.zeros(20, np.int64)
    with pytest.raises(ValueError, match=r"^Trainer: mini_batch_size=2 is the global batch and "
                                         r"must give each of the 3 processes a sample$"):
        Trainer(TwoLayerNet(4, 3, 2), x, t, x, t, mini_batch_size=2, verbose=False)
    assert Trainer(TwoLayerNet(4, 3, 2, seed=0), x, t, x, t, mini_batch_size=3, seed=0,
                   verbose=False).batches.batch_size == 3


def test_a_launcher_without_mpi4py_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(RuntimeError, match="started by an MPI launcher with 2 processes, but "
                                           "mpi4py is not installed.*xpnet\\[distributed\\]"):
        distributed.world({"PMI_SIZE": "2", "PMI_RANK": "1"})


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("net", ["two-layer", "dropout", "batchnorm", "simple-conv"])
def test_n_processes_train_what_one_trains(tmp_path, net, ranks):
    want, _ = job(tmp_path, net)
    got, done = job(tmp_path, net, ranks)
    assert f"world: {ranks} process(es)" in done.stdout
    assert f"data-parallel over {ranks} processes" in done.stdout
    assert done.stdout.count("step:") == 2  # rank 0 alone prints
    assert_same_run(got, want)
    out = tmp_path / f"{net}-{ranks}.npz"
    shards = [(tmp_path / f"{out.name}.rank{r}").read_text() for r in range(ranks)]
    # each rank's gradient ran on its shard of the batch of 10 only
    assert shards == (["5", "5"] if ranks == 2 else ["3", "3", "4"])


@needs_mpi
@pytest.mark.parametrize("net", ["two-layer", "dropout", "batchnorm", "simple-conv"])
def test_a_last_batch_smaller_than_the_world_trains_what_one_process_trains(tmp_path, net):
    """51 samples in batches of 10: each epoch ends on one sample, which one of three
    processes holds; the other two take part with an empty shard (no loss, no gradient, the
    collectives all the same). It ended in a ZeroDivisionError on those ranks. Batch norm
    is refused a batch of one (its own mean): its epochs end on two samples, and one
    process has an empty shard."""
    samples = "52" if net == "batchnorm" else "51"
    want, _ = job(tmp_path, net, None, "--samples", samples)
    got, _ = job(tmp_path, net, 3, "--samples", samples)
    assert_same_run(got, want)
    shards = [(tmp_path / f"{net}-3.npz.rank{r}").read_text() for r in range(3)]
    # the batches of 10 and the last one's shards
    assert shards == (["0 3", "1 3", "1 4"] if net == "batchnorm" else ["0 3", "0 3", "1 4"])


@needs_mpi
def test_drop_last_leaves_out_the_same_batch_on_every_rank(tmp_path):
    """51 samples in batches of 10 with drop_last: five whole global batches an epoch on
    every rank (shards of 3, 3 and 4), the last sample left out, as one process leaves it."""
    want, _ = job(tmp_path, "batchnorm", None, "--samples", "51", "--drop-last")
    got, _ = job(tmp_path, "batchnorm", 3, "--samples", "51", "--drop-last")
    assert_same_run(got, want)
    shards = [(tmp_path / f"batchnorm-3.npz.rank{r}").read_text() for r in range(3)]
    assert shards == ["3", "3", "4"]  # no shard of the last sample's batch: it is not run


@needs_mpi
@pytest.mark.parametrize("net", ["dropout", "batchnorm"])
def test_without_seeds_every_rank_trains_rank_0s_run(tmp_path, net):
    """A network and a Trainer made without seeds draw weights, dropout's keys and the
    batch order from each process's own entropy: the ranks start from rank 0's (as DDP
    and Horovod broadcast them) and draw its order, so they stay one run (the job checks
    the parameters at every epoch end, check_replicas)."""
    out = tmp_path / "unseeded-3.npz"
    job(tmp_path, net, 3, "--unseeded", "--epochs", "3", name="unseeded")
    orders = [ast.literal_eval((tmp_path / f"{out.name}.orders{r}").read_text())
              for r in range(3)]
    assert len(orders[0]) == 3 and orders[1] == orders[0] and orders[2] == orders[0]


@needs_mpi
@pytest.mark.parametrize("net", ["dropout", "batchnorm"])
def test_three_processes_stay_with_one_over_many_steps(tmp_path, net):
    """200 steps (40 epochs of 5): the rank-order sum's rounding does not drift apart
    from one process's (float64, 1e-9)."""
    want, _ = job(tmp_path, net, None, "--epochs", "40")
    got, _ = job(tmp_path, net, 3, "--epochs", "40")
    assert len(want["losses"]) == 200
    assert_same_run(got, want)


@needs_mpi
def test_a_checkpoint_from_two_ranks_resumes_on_three_as_an_uninterrupted_run(tmp_path):
    want, _ = job(tmp_path, "dropout", None, "--epochs", "3", name="full")
    path = tmp_path / "run.npz"
    job(tmp_path, "dropout", 2, "--epochs", "1", "--checkpoint", str(path), name="first")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run.npz"]
    got, _ = job(tmp_path, "dropout", 3, "--epochs", "3", "--checkpoint", str(path), "--resume",
                 name="resumed")
    assert_same_run(got, want)


@needs_mpi
@pytest.mark.parametrize("before, after", [(2, None), (3, 2)])
def test_a_run_stopped_mid_epoch_resumes_on_another_world_as_an_uninterrupted_run(
        tmp_path, before, after):
    """SIGTERM to the last rank during step 7 (of 5-step epochs): every rank stops after
    the same step (step 8: the ranks' agreement on a signal, started with one step,
    completes at the next, so that no step waits for it), rank 0 writes the mid-epoch
    checkpoint, and the run resumed on another number of processes (None: a plain one)
    ends as one never stopped."""
    want, _ = job(tmp_path, "dropout", None, "--epochs", "3", name="full")
    path = tmp_path / "run.npz"
    _, stopped = job(tmp_path, "dropout", before, "--epochs", "3", "--checkpoint", str(path),
                     "--term-at", "7", check=False, name="stopped")
    assert stopped.returncode == 143, stopped.stdout + stopped.stderr
    assert stopped.stdout.count("training interrupted by SIGTERM after step 8 of 15") == 1, \
        stopped.stdout
    got, _ = job(tmp_path, "dropout", after, "--epochs", "3", "--checkpoint", str(path),
                 "--resume", name="resumed")
    assert_same_run(got, want)


@needs_mpi
def test_a_rank_that_raises_ends_the_job(tmp_path):
    started = time.perf_counter()
    _, done = job(tmp_path, "two-layer", 2, "--fail-at", "3", check=False, timeout=60)
    assert done.returncode != 0
    assert time.perf_counter() - started < 60
    assert "rank 1 of 2 failed" in done.stderr and "a deliberate failure at step 3" in done.stderr


@needs_mpi
def test_a_diverged_run_stops_every_rank_with_its_own_error_not_an_abort(tmp_path):
    """The loss is the global batch's, so every rank finds it NaN at the same step and
    raises the same error, which each prints in full: none aborts the job (an abort ends
    the other ranks wherever they are, their own words cut short)."""
    _, done = job(tmp_path, "two-layer", 2, "--diverge", check=False, timeout=60)
    assert done.returncode != 0
    assert "ending the job" not in done.stderr, done.stderr
    found = re.findall(r"FloatingPointError: Trainer: the loss became (?:nan|inf|-inf) at "
                       r"step (\d+) of 10", done.stderr)
    assert len(found) == 2 and found[0] == found[1], done.stderr


@needs_mpi
def test_a_rank_whose_trainer_cannot_be_made_ends_the_job(tmp_path):
    """Rank 1 alone fails in the Trainer's constructor, while rank 0 goes on to the
    broadcast of its parameters: the job ends within seconds, naming rank 1's error
    (it used to wait there forever)."""
    started = time.perf_counter()
    _, done = job(tmp_path, "two-layer", 2, "--bad-lr-on", "1", check=False, timeout=60)
    assert done.returncode != 0
    assert time.perf_counter() - started < 60
    assert "rank 1 of 2 failed" in done.stderr, done.stderr
    assert "SGD: lr must be a finite number in (0, inf), got -1.0" in done.stderr


@needs_mpi
def test_ranks_that_build_different_networks_are_refused_by_name(tmp_path):
    _, done = job(tmp_path, "two-layer", 2, "--wider-on", "1", check=False, timeout=60)
    assert done.returncode != 0
    assert ("the processes built different networks: rank 0 TwoLayerNet(input_size=12, "
            "hidden_size=7, output_size=3), rank 1 TwoLayerNet(input_size=12, hidden_size=9, "
            "output_size=3)") in done.stderr, done.stderr


@needs_mpi
def test_ranks_given_different_optimizers_are_refused_by_name(tmp_path):
    _, done = job(tmp_path, "two-layer", 2, "--bad-lr-on", "1", "--lr-only", check=False,
                  timeout=60)
    assert done.returncode != 0
    assert ("the processes built different optimizers: rank 0 Adam(lr=0.01), rank 1 "
            "Adam(lr=0.02)") in done.stderr, done.stderr


@needs_mpi
def test_ranks_given_different_data_are_refused_before_training(tmp_path):
    _, done = job(tmp_path, "two-layer", 2, "--other-data-on", "1", check=False, timeout=60)
    assert done.returncode != 0
    assert "the 2 processes were given different x_train, x_test: every process of a " \
        "data-parallel run needs the same data" in done.stderr, done.stderr


@needs_mpi
def test_replicas_that_drift_apart_are_named_at_the_epochs_end(tmp_path):
    """check_replicas (on in the job): one rank's b1 moved by 1e-9 after its third step, as
    a wrong data-parallel step would move it, ends the job at the first epoch's end naming
    the parameter, on every rank alike, before any checkpoint of the broken run."""
    path = tmp_path / "run.npz"
    _, done = job(tmp_path, "two-layer", 2, "--drift-on", "1", "--checkpoint", str(path),
                  check=False, timeout=60)
    assert done.returncode != 0
    assert ("Trainer: after epoch 1 the processes hold different parameters or layer state "
            "(b1): the data-parallel step went wrong") in done.stderr, done.stderr
    assert not path.exists()


@needs_mpi
def test_a_rank_that_dies_ends_the_job_and_the_last_checkpoint_stays(tmp_path):
    """SIGKILL on rank 1 in the second epoch: no traceback and no MPI_Abort from it, yet
    the launcher ends the job and the first epoch's checkpoint is whole."""
    path = tmp_path / "run.npz"
    started = time.perf_counter()
    _, done = job(tmp_path, "two-layer", 2, "--slow", "--fail-at", "550", "--die",
                  "--checkpoint", str(path), check=False, timeout=60)
    assert done.returncode != 0
    assert time.perf_counter() - started < 60
    from framework import checkpoint
    meta, _ = checkpoint.read(str(path))
    assert meta["trainer"]["iteration"] == 400  # the end of epoch 1 (400 steps of 10)


@needs_mpi
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_mpiexec_stops_every_rank_after_the_same_step(tmp_path, signum, code):
    path = tmp_path / "run.npz"
    process = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, JOB, "two-layer",
                                str(tmp_path / "never.npz"), "--slow", "--checkpoint", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env(), cwd=tmp_path, preexec_fn=sigint_as_at_a_terminal)
    try:
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:  # the first epoch's checkpoint
            time.sleep(0.2)
        assert path.exists(), "the run wrote no checkpoint"
        time.sleep(0.5)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stdout + stderr
    assert stdout.count("Resume with:") == 1, stdout  # rank 0 alone
    assert f"training interrupted by {signal.Signals(signum).name}" in stdout
    from framework import checkpoint
    meta, _ = checkpoint.read(str(path))
    assert meta["trainer"]["iteration"] + meta["trainer"]["position"] > 0


@needs_mpi
def test_ranks_on_the_cpu_sum_in_host_memory(tmp_path):
    _, done = job(tmp_path, "two-layer", 2)
    assert "data-parallel over 2 processes, MPI (" in done.stdout
    assert "the gradients are summed in host memory" in done.stdout


# On a GPU machine (scripts/gpu_check.sh runs these): the device paths.

@needs_mpi
@needs_gpu
@pytest.mark.parametrize("net", ["dropout", "batchnorm", "simple-conv"])
def test_ranks_sharing_one_gpu_train_what_one_trains_through_the_host(tmp_path, net):
    want, _ = job(tmp_path, net, backend="cupy")
    got, done = job(tmp_path, net, 2, backend="cupy", device="cuda:0")
    # the first reason found: NCCL missing on a rank (CuPy finds no NCCL library), else
    # the shared GPU
    why = "rank 0: NCCL does not load" if distributed._nccl_unusable() else \
        "ranks 0 and 1 share one GPU"
    assert f"through the host: {why}" in done.stdout, done.stdout
    assert_same_run(got, want)


@needs_mpi
@needs_gpu
def test_more_ranks_than_gpus_is_an_error_that_says_what_to_do(tmp_path):
    _, done = job(tmp_path, "two-layer", GPUS + 1, check=False, backend="cupy")
    assert done.returncode != 0
    assert (f"{GPUS + 1} processes were started on this machine but it has {GPUS} GPU"
            in done.stderr), done.stderr
    assert "XPNET_DEVICE=cuda:0" in done.stderr


@needs_mpi
@pytest.mark.skipif(GPUS < 2, reason="NCCL needs a GPU a rank: fewer than 2 GPUs here")
@pytest.mark.parametrize("net", ["dropout", "batchnorm", "simple-conv"])
def test_one_gpu_a_rank_trains_what_one_trains_over_nccl(tmp_path, net):
    want, _ = job(tmp_path, net, backend="cupy")
    got, done = job(tmp_path, net, 2, backend="cupy")
    assert "NCCL " in done.stdout and "summed on the GPUs" in done.stdout, done.stdout
    assert_same_run(got, want)


def test_nccl_is_chosen_only_with_a_gpu_a_rank_and_nccl_on_every_rank():
    one_each = [("node0", "0000:01:00.0", None), ("node0", "0000:41:00.0", None),
                ("node1", "0000:01:00.0", None)]  # the same bus id on another machine
    assert distributed.gpu_transport(one_each) is None
    shared = one_each + [("node0", "0000:41:00.0", None)]
    assert distributed.gpu_transport(shared) == (
        "ranks 1 and 3 share one GPU (0000:41:00.0 on node0), which NCCL does not allow")
    two_on_one = [("node0", "0000:01:00.0", None)] * 2  # mpiexec -n 2 on a one-GPU machine
    assert distributed.gpu_transport(two_on_one) == (
        "ranks 0 and 1 share one GPU (0000:01:00.0 on node0), which NCCL does not allow")
    missing = [("node0", "0000:01:00.0", None), ("node0", "0000:41:00.0", "NCCL does not load")]
    assert distributed.gpu_transport(missing) == "rank 1: NCCL does not load"


@needs_mpi
@pytest.mark.parametrize("namespace, device", [("array_api_strict", None), ("torch", "cpu"),
                                               ("torch", "cuda:0"), ("jax", None)])
def test_any_namespace_trains_data_parallel_what_numpy_trains(tmp_path, namespace, device):
    """The standard's path under mpiexec: the gradients go through the host over MPI
    (on a GPU machine, PyTorch's CUDA tensors too: two ranks share its first GPU)."""
    import backends
    if namespace not in backends.available():
        pytest.skip(unusable(namespace, backends.backend_class(namespace).usable()[1]))
    if device == "cuda:0" and not __import__("torch").cuda.is_available():
        pytest.skip(unusable("torch", "PyTorch sees no CUDA device"))
    want, _ = job(tmp_path, "simple-conv", name="numpy")
    got, done = job(tmp_path, "simple-conv", 2, backend=namespace, device=device)
    assert "the gradients are summed through the host" in done.stdout, done.stdout
    assert_same_run(got, want)


SHARE_PROBE = """
import json, backends
from backends import mpi_env
from backends.host import threads
from threadpoolctl import threadpool_info
def blas():
    return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
before = blas()
with backends.cpu_share():
    inside = blas()
with open(f"share.{mpi_env.launched().rank}", "w") as f:  # one file a rank: no mixed lines
    json.dump([before, inside, blas(), threads.host_threads(backends.settings())], f)
"""


@needs_mpi
def test_each_process_of_a_job_takes_its_share_of_the_cores_and_gives_blas_back(tmp_path):
    """Two ranks on this machine: BLAS on half its cores each while a run lasts (not
    all of them twice over), as before after it; xpnet's own threads likewise."""
    import json
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", SHARE_PROBE],
                          capture_output=True, text=True, timeout=60, env=env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    reports = [json.loads((tmp_path / f"share.{rank}").read_text()) for rank in range(2)]
    for before, inside, after, host_threads in reports:
        assert inside == [share] and after == before and host_threads == min(share, 8)


def probe_result(tmp_path, source, ranks):
    """Run the probe ``source`` on ``ranks`` processes under mpiexec: the JSON its rank 0
    printed last (the job must succeed)."""
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    done = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, str(probe)],
                          capture_output=True, text=True, timeout=120, env=env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


ALL_REDUCE_PROBE = """
import json, sys
import numpy as np
from backends.arrays import sum_in_rank_order
from backends.registry import REGISTRY
from framework import distributed
world = distributed.world()
c = world.communicator
rng = np.random.default_rng(world.rank)
report, results = {}, []
for n in (1, 3, 7, 1000):
    # each rank's values, the rank-order sum's test of order among them: rows 1, 1e16,
    # -1e16 (ranks 0-2) sum to 0.0 left to right and to 1.0 the other way
    mine = rng.standard_normal(n) * 10.0 ** (3 * world.rank)
    mine[0] = (1.0, 1e16, -1e16, 0.0)[world.rank]
    everyone = np.stack(c.comm.allgather(mine))
    want = sum_in_rank_order(everyone)
    before = c.sent
    c.gather_up_to = world.size  # every rank's whole buffer
    gathered = c.all_reduce(mine)
    sent_gathered = c.sent - before
    c.gather_up_to = 1  # one chunk a rank
    before = c.sent
    chunked = c.all_reduce(mine)
    report[n] = [bool(np.array_equal(gathered, want)), bool(np.array_equal(chunked, want)),
                 float(gathered[0]), sent_gathered, c.sent - before]
    results.append(chunked.tobytes().hex())
same = c.everyone(results)  # every rank's sums, byte for byte
agreed = c.start_largest(world.rank * 10)
if world.is_root:
    print(json.dumps({"report": report, "same": all(r == same[0] for r in same),
                      "largest": agreed.wait()}))
else:
    agreed.wait()
"""


@needs_mpi
def test_the_all_reduce_adds_in_rank_order_in_either_form(tmp_path):
    """Four ranks: gathering every buffer and the chunked form (each rank adds every rank's
    part of one chunk, the chunks gathered) give every rank the same bits, the rank-order
    sum's (1 + 1e16 - 1e16 is 0.0), and the chunked form sends about two buffers a rank
    where the gathered one sends three."""
    out = probe_result(tmp_path, ALL_REDUCE_PROBE, 4)
    assert out["same"] and out["largest"] == 30  # start_largest: the ranks' largest
    for n, (gathered_ok, chunked_ok, first, sent_gathered, sent_chunked) in out["report"].items():
        assert gathered_ok and chunked_ok, n
        assert first == 0.0, n
        n = int(n)
        assert sent_gathered == 3 * n  # (ranks - 1) whole buffers
        if n >= 4:  # rank 0: all but its chunk out, its summed chunk to the three others
            assert sent_chunked == (n - n // 4) + 3 * (n // 4) <= 2 * n
        else:  # fewer elements than ranks: the buffer goes whole, as gathered
            assert sent_chunked == 3 * n


BROADCAST_PROBE = """
import json
import re
import numpy as np
import backends
from backends.registry import REGISTRY
from framework import distributed
world = distributed.world()
c = world.communicator
value = float(world.rank + 1)  # rank 0's is 1.0
arrays = {"fortran": np.asfortranarray(np.full((3, 4), value)),
          "strict": __import__("array_api_strict").full((2, 3), value)}
if "jax" in backends.available():
    import jax.numpy as jnp
    arrays["jax"] = jnp.full((2, 2), value)
got = c.broadcast_arrays(arrays)
report = {name: bool(np.all(backends.to_numpy(a) == 1.0)) for name, a in got.items()}
everyone = c.everyone(report)
if world.is_root:
    print(json.dumps(everyone))
"""


@needs_mpi
def test_broadcast_arrays_gives_every_rank_rank_0s_values_whatever_the_arrays_memory(
        tmp_path):
    """Rank 0's parameters reach every rank as the arrays the network holds, also where MPI
    cannot write into them: a Fortran-ordered NumPy array (sent through a C-ordered copy),
    array-api-strict's, JAX's immutable ones (a new array in their place). A broadcast that
    wrote only into the copy left rank 1 with its own values, silently."""
    ranks = probe_result(tmp_path, BROADCAST_PROBE, 2)
    assert len(ranks) == 2 and all(all(r.values()) for r in ranks), ranks
    assert {"fortran", "strict"} <= set(ranks[1])
