"""backends/host/ops.py and threads.py: the CPU's operations split across threads give the
one-thread results, and NumPy's BLAS gets its threads back after every network call."""

import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import backends

from backends.host import ops as host_ops
from backends.host import threads as host_threads_module
from backends.host.ops import HostOps
from backends.host.threads import blas_controller, host_threads
from backends.settings import Settings
from backends.ops import StridedOps


@pytest.fixture
def split(monkeypatch):
    """HostOps with 3 threads that splits even these small test arrays."""
    monkeypatch.setattr(host_threads_module, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(host_threads_module, "MIN_PART_MACS", 1)
    monkeypatch.setattr(host_ops, "MIN_PART_SIDE", 2)
    ops = HostOps(np, threads=3)
    with ops.scope():  # as inside a convolutional network's call: products split here
        ops.blas.borrow()
        yield ops


plain = StridedOps(np)
rng = np.random.default_rng(0)


def channel_major(shape, dtype="float64"):
    """An (N, C, H, W) view of (C, N, H, W) memory, as a convolution outputs."""
    n, c, h, w = shape
    return rng.standard_normal((c, n, h, w)).astype(dtype).transpose(1, 0, 2, 3)


@pytest.mark.parametrize("env, expected", [("3", 3), ("1", 1), (" 2 ", 2)])
def test_thread_count_from_the_environment(env, expected):
    assert host_threads(Settings.read({"XPNET_HOST_THREADS": env})) == expected


@pytest.mark.parametrize("env", ["0", "-2", "two", "1.5"])
def test_bad_thread_count_names_the_variable_and_value(env):
    with pytest.raises(ValueError, match=rf"XPNET_HOST_THREADS='{env}'.*positive integer"):
        Settings.read({"XPNET_HOST_THREADS": env})


def test_default_thread_count_is_the_cores_at_most_eight():
    n = host_threads(Settings(), {})
    assert 1 <= n <= 8


@pytest.mark.parametrize("fh, fw, stride, pad", [(3, 3, 1, 1), (5, 5, 1, 0), (2, 3, 2, 2),
                                                 (2, 2, 2, 0), (3, 2, 3, 1)])
def test_im2col_and_col2im_split_are_bit_identical(split, fh, fw, stride, pad):
    x = channel_major((7, 3, 9, 8))
    out_h = (9 + 2 * pad - fh) // stride + 1
    out_w = (8 + 2 * pad - fw) // stride + 1
    col = split.im2col(x, fh, fw, stride, pad, out_h, out_w)
    np.testing.assert_array_equal(col, plain.im2col(x, fh, fw, stride, pad, out_h, out_w))
    into = np.full_like(col, np.nan)
    assert split.im2col(x, fh, fw, stride, pad, out_h, out_w, out=into) is into
    np.testing.assert_array_equal(into, col)
    dcol = rng.standard_normal(col.shape)
    dx = split.col2im(dcol, x.shape, fh, fw, stride, pad, out_h, out_w)
    np.testing.assert_array_equal(dx, plain.col2im(dcol, x.shape, fh, fw, stride, pad,
                                                   out_h, out_w))
    # and it is the adjoint: <im2col(x), c> == <x, col2im(c)>
    assert np.isclose(np.vdot(col, dcol), np.vdot(x, dx), rtol=1e-12)


@pytest.mark.parametrize("ph, pw, stride, pad", [(2, 2, 2, 0), (3, 3, 2, 1), (2, 3, 1, 1)])
def test_max_pool_split_is_bit_identical(split, ph, pw, stride, pad):
    x = channel_major((6, 4, 10, 9), "float32")
    x[0, 0, :2, :2] = 1.0  # a tie: the first maximum must win in every part
    out_h = (10 + 2 * pad - ph) // stride + 1
    out_w = (9 + 2 * pad - pw) // stride + 1
    out, arg = split.max_pool(x, ph, pw, stride, pad, out_h, out_w)
    ref_out, ref_arg = plain.max_pool(x, ph, pw, stride, pad, out_h, out_w)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)
    for dout in (rng.standard_normal(out.shape).astype("float32"),  # sample-major
                 np.ascontiguousarray(rng.standard_normal(out.shape).astype("float32")
                                      .transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)):
        dx = split.max_pool_grad(dout, arg, x, ph, pw, stride, pad)
        np.testing.assert_array_equal(dx, plain.max_pool_grad(dout, arg, x, ph, pw, stride, pad))
        assert dx.shape == x.shape
        assert np.argsort(dx.strides).tolist() == np.argsort(x.strides).tolist()  # x's layout


def test_relu_split_is_bit_identical(split):
    x = channel_major((5, 6, 7, 3), "float32")
    out, keep = split.relu(x)
    ref_out, ref_keep = plain.relu(x)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(keep, ref_keep)
    dout = rng.standard_normal(x.shape).astype("float32")
    np.testing.assert_array_equal(split.relu_backward(dout, keep), plain.relu_backward(dout, keep))


@pytest.mark.parametrize("m, k, n", [(6, 40, 300), (300, 40, 6), (4, 5000, 9), (64, 64, 64),
                                     (2, 5000, 3)])
@pytest.mark.parametrize("bias", [False, True])
def test_split_products_match_numpy(split, m, k, n, bias):
    """By output columns, by rows, and (2 x 3: both sides under two parts' worth) a long k
    cut into partial sums added in order."""
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T  # a transposed operand, as the layers pass
    c = rng.standard_normal(n) if bias else None
    got = split.matmul(a, b, bias=c)
    expected = a @ b + (c if bias else 0)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    into = np.empty((m, n))
    assert split.matmul(a, b, bias=c, out=into) is into
    np.testing.assert_array_equal(into, got)  # the same parts, the same order: the same sums


def test_a_failing_part_raises_after_every_part_finished(split):
    finished = []

    def work(lo, hi):
        if lo > 0:
            raise RuntimeError(f"part {lo}:{hi} failed")
        threading.Event().wait(0.05)
        finished.append((lo, hi))

    with pytest.raises(RuntimeError, match="failed"):
        split.each_part(work, 9, nbytes=10**9)
    assert finished == [(0, 3)]


def _child_pools(ops, queue):
    x = channel_major((8, 3, 6, 6))
    queue.put(float(ops.relu(x)[0].sum()))


# forking a process whose pool is running is the case under test (Python 3.12 warns of it)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_makes_its_own_threads(split):
    """The parent's pool full (every worker made: three parts that wait for one another),
    the child inherits workers that do not exist there; work queued to them would wait
    forever (with a worker still to make, the inherited pool would make it and hide that)."""
    together = threading.Barrier(3, timeout=10)
    split.each_part(lambda lo, hi: together.wait(), 3, nbytes=10**9)
    assert len(split.pool._executor._threads) == 2  # the parent's pool now exists, full
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_pools, args=(split, queue))
    child.start()
    child.join(30)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the split operation hung in a forked child"
    assert child.exitcode == 0
    assert queue.get(timeout=5) > 0


def test_nested_splits_run_in_the_part_that_asked(split):
    """An operation called inside a part (im2col inside a chunked loop) does not split
    again: the pool's threads are all busy with the outer parts."""
    seen = []

    def inner(lo, hi):
        seen.append((lo, hi))

    split.each_part(lambda lo, hi: split.each_part(inner, 6, nbytes=10**9), 3, nbytes=10**9)
    assert sorted(seen) == [(0, 6)] * 3


def blas_threads():
    """The threads of the BLAS xpnet lends: NumPy's, as its controller found it, once a
    process. A BLAS another library loads later is not NumPy's and not lent: counted too,
    SciPy 1.15's own OpenBLAS (``import scipy.sparse`` loads it; a test of the refused
    sparse arrays does) read as a borrow that never happened, in a pytest-xdist worker
    that had run such a test first."""
    pytest.importorskip("threadpoolctl")
    controller = blas_controller()
    if controller is None:
        pytest.skip("no BLAS library threadpoolctl can set here")
    return max(library.num_threads for library in controller.lib_controllers)


@pytest.fixture
def blas_at_two():
    """NumPy's BLAS at two threads for the test, whatever came before (an earlier test that
    left it at one must not turn the give-back tests into skips), and the host's operations
    on two threads, so that a convolution borrows it."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas_threads()  # skips where no BLAS can be set
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"), \
            backends.configured(host_threads=2):
        assert blas_threads() == 2
        yield 2


def test_a_network_call_lends_blas_to_xpnet_and_gives_it_back(blas_at_two):
    """The user's own products after a convolutional net's gradient run on BLAS's threads
    again (they ran on one for the rest of the process before)."""
    from models import SimpleConvNet
    backends.use("numpy")  # the host wing's test, whatever backend the run names
    ops = HostOps(np, threads=2)
    seen = []
    with ops.scope():
        with ops.scope():  # nested scopes: only the outermost gives back
            ops.conv(np.ones((1, 1, 5, 5)), np.ones((2, 1, 3, 3)), np.zeros(2), 1, 0, 3, 3)
            seen.append(blas_threads())
        seen.append(blas_threads())
        assert ops.blas.borrowed
    seen.append(blas_threads())
    assert seen == [1, 1, 2] and not ops.blas.borrowed
    net = SimpleConvNet(input_dim=(1, 12, 12), conv_param={"filter_num": 4, "filter_size": 3,
                                                            "pad": 0, "stride": 1}, seed=0)
    inside = []
    conv = net.layers["Conv1"]
    forward = conv.forward
    conv.forward = lambda *a: (inside.append(blas_threads()), forward(*a))[1]
    net.gradient(np.ones((4, 1, 12, 12), dtype=np.float32), np.arange(4))
    net.accuracy(np.ones((4, 1, 12, 12), dtype=np.float32), np.arange(4))
    assert inside and blas_threads() == 2


def test_a_convolution_outside_a_network_gives_blas_back_too(blas_at_two):
    ops = HostOps(np, threads=2)
    out, col = ops.conv(np.ones((1, 1, 5, 5)), np.ones((2, 1, 3, 3)), np.zeros(2), 1, 0, 3, 3)
    ops.conv_grad(np.ones(out.shape), np.ones((1, 1, 5, 5)), np.ones((2, 1, 3, 3)), col, 1, 0)
    assert blas_threads() == 2 and not ops.blas.borrowed


def test_fully_connected_nets_leave_blas_alone(blas_at_two):
    from models import TwoLayerNet
    backends.use("numpy")  # the host's test, whatever XPNET_BACKEND says (restored after)
    ops = HostOps(np, threads=2)
    with ops.scope():
        ops.matmul(np.ones((64, 64)), np.ones((64, 64)))
        assert blas_threads() == 2 and not ops.blas.borrowed
    net = TwoLayerNet(20, 8, 3, seed=0)
    net.gradient(np.ones((4, 20), dtype=np.float32), np.arange(4) % 3)
    assert blas_threads() == 2


def test_blas_is_borrowed_only_inside_a_network_call(blas_at_two):
    """Outside every scope a borrow does nothing: the threads would never be given back."""
    ops = HostOps(np, threads=2)
    ops.blas.borrow()
    assert blas_threads() == 2 and not ops.blas.borrowed
    with ops.scope():
        ops.blas.borrow()
        assert blas_threads() == 1 and ops.blas.borrowed
    assert blas_threads() == 2 and not ops.blas.borrowed


def test_a_borrow_made_in_one_thread_is_given_back_by_another():
    """Two threads' network calls overlap: the first borrows BLAS, the second ends last
    and gives it back. threadpoolctl lets one Python thread at a time set OpenBLAS's pool
    and ignores, without a word, what any other sets: a borrower that kept control made
    the give-back a no-op, and BLAS stayed on one thread for the rest of the process."""
    controller = blas_controller()
    if controller is None or any(getattr(lib, "threading_layer", None) != "pthreads"
                                 for lib in controller.lib_controllers):
        pytest.skip("needs OpenBLAS on its own threads: one pool for the whole process")
    two = controller.limit(limits=2, user_api="blas")  # set from here, then let go of
    host_threads_module._release_control(controller)
    try:
        assert blas_threads() == 2
        ops = HostOps(np, threads=2)
        borrowed, second_in, first_out = (threading.Event() for _ in range(3))
        seen = []

        def first():
            with ops.scope():
                ops.conv(np.ones((1, 1, 5, 5)), np.ones((2, 1, 3, 3)), np.zeros(2), 1, 0, 3, 3)
                seen.append(blas_threads())
                borrowed.set()
                second_in.wait(60)
            first_out.set()

        def second():
            borrowed.wait(60)
            with ops.scope():
                second_in.set()
                first_out.wait(60)
            # this thread's exit was the last: it gave BLAS back

        calls = [threading.Thread(target=first), threading.Thread(target=second)]
        for call in calls:
            call.start()
        for call in calls:
            call.join(120)
        assert seen == [1] and not ops.blas.borrowed
        assert blas_threads() == 2
    finally:
        two.restore_original_limits()
        host_threads_module._release_control(controller)


class _ProcessBlas:
    """A stand-in for threadpoolctl's controller with the one property that matters here:
    one thread count for the whole process. Its ``limit`` lets other threads run while it
    sets the count, as threadpoolctl's calls into the BLAS library do (ctypes lets the
    GIL go); the count it records to give back is the one it found."""

    lib_controllers = ()  # no library whose control threadpoolctl hands between threads

    def __init__(self, threads):
        self.threads, self.limits_taken = threads, 0

    def limit(self, limits, user_api):
        found, self.threads = self.threads, limits
        self.limits_taken += 1
        time.sleep(0.02)
        blas = self

        class Limiter:
            def restore_original_limits(self):
                blas.threads = found
        return Limiter()


def test_networks_called_from_threads_at_once_give_blas_its_threads_back(monkeypatch):
    """BLAS's thread count belongs to the process: calls on several threads at once borrow
    it once and give it back when the last ends. (Each borrowed it, the second recording
    the first's one thread as the count to restore: BLAS stayed on one thread after.)"""
    process_blas = _ProcessBlas(threads=4)
    monkeypatch.setattr(host_threads_module, "blas_controller", lambda: process_blas)
    blas = host_threads_module.Blas()
    together = threading.Barrier(3, timeout=60)  # a thread that fails breaks it: no hang

    def network_call():
        together.wait()
        with blas.scope():
            blas.borrow()
            assert process_blas.threads == 1
            together.wait()  # all three inside at once

    calls = [threading.Thread(target=network_call) for _ in range(3)]
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    assert (process_blas.threads, process_blas.limits_taken) == (4, 1)
    assert not blas.borrowed and blas._depth == 0


THREADS_AT_ONCE = """
import threading
import numpy as np
import threadpoolctl
import backends
from models import SimpleConvNet

def blas_threads():
    return max(i["num_threads"] for i in threadpoolctl.threadpool_info()
               if i["user_api"] == "blas")

before, seen = blas_threads(), []
start = threading.Barrier(4)

def calls(seed):
    x = np.random.default_rng(seed).random((64, 1, 12, 12), dtype=np.float32)
    start.wait()  # the process's first networks and calls, in four threads at once
    net = SimpleConvNet(input_dim=(1, 12, 12), conv_param={"filter_num": 4, "filter_size": 3,
                                                         "pad": 0, "stride": 1}, hidden_size=8,
                        output_size=3, seed=seed)
    seen.append(backends.ops_for(x))
    for _ in range(100):
        net.predict(x)

threads = [threading.Thread(target=calls, args=(i,)) for i in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(before, blas_threads(), len(set(map(id, seen))))
"""


def test_threads_meeting_numpy_at_once_share_its_operations_and_give_blas_back():
    """Four threads whose first network calls met at once each made their own HostOps, each
    with its own count of BLAS's borrowers: one borrowed BLAS's threads, another recorded
    that one thread as the count to give back, and BLAS stayed on one thread for the rest
    of the process. And threadpoolctl lets one Python thread at a time
    set OpenBLAS: a give-back from another thread than the borrower's was ignored until
    the borrower let go. A real process, as a user's thread pool (the old code failed
    7 runs in 8 with several operations, 3 in 8 with BLAS left on one thread)."""
    import subprocess
    import sys
    from tests.conftest import ROOT
    blas_threads()  # skips where no BLAS can be set
    # the default thread count: working it out asks threadpoolctl, whose scan of the
    # loaded libraries lets the other threads run, into making operations of their own
    env = {k: v for k, v in os.environ.items() if k != "XPNET_HOST_THREADS"}
    for run in range(3):
        r = subprocess.run([sys.executable, "-c", THREADS_AT_ONCE], capture_output=True,
                           text=True, timeout=120, cwd=ROOT,
                           env=dict(env, PYTHONPATH=ROOT, XPNET_BACKEND="numpy"))
        assert r.returncode == 0, r.stderr
        before, after, operations = map(int, r.stdout.split())
        assert (after, operations) == (before, 1), (run, r.stdout)
