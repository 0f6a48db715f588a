"""What only a GPU can show: the step loop never waits for the device, and a
200-step run on CuPy follows the NumPy run. Skipped, with the reason, without CuPy.

(Every other test already runs on CuPy through the ``backend`` fixture.)
"""

import time

import numpy as np
import pytest

import backends
from framework.trainer import Trainer
from models import TwoLayerNet
from tests.conftest import to_host

needs_gpu = pytest.mark.skipif("cupy" not in backends.available(),
                               reason="cupy backend not usable here: needs a GPU")

SPIN_SOURCE = r'''
extern "C" __global__ void spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) { }
}
'''


def spin_kernel(seconds):
    """Queue a one-thread kernel that keeps the stream busy for about ``seconds``."""
    import cupy
    kernel = cupy.RawKernel(SPIN_SOURCE, "spin")
    khz = cupy.cuda.Device().attributes["ClockRate"]
    kernel((1,), (1,), (np.int64(seconds * khz * 1e3),))


def data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


@needs_gpu
def test_step_loop_never_waits_for_the_gpu(on_cupy):
    """Keep the GPU busy for 2 s, then issue 20 eager training steps behind that
    work: any synchronisation in a step (a host copy, .item(), float(loss), a
    stream sync) would hold the host until the spin ends.

    20, not more: an eager step is about 21 launches, and the driver queues
    about a thousand pending launches before the next one waits for room (on
    an H100, 50 steps held the host for the whole 2 s; that wait is the
    queue's, not a synchronisation of ours)."""
    x, t = data()
    trainer = Trainer(TwoLayerNet(784, 50, 10, seed=0), x, t, x[:100], t[:100], epochs=1,
                      mini_batch_size=20, optimizer="SGD", optimizer_param={"lr": 0.1},
                      verbose=False, seed=0)
    losses = on_cupy.xp.empty(100, dtype=np.float32)
    batches = iter(trainer.batches)  # the epoch's indices go up here, before the spin
    for i in range(5):  # warm-up: kernel compilation and cuBLAS set-up may wait
        losses[i] = trainer.train_step(*next(batches))
    on_cupy.synchronize()

    spin_kernel(2.0)
    start = time.perf_counter()
    for i in range(5, 25):
        losses[i] = trainer.train_step(*next(batches))
    issued = time.perf_counter() - start
    on_cupy.synchronize()
    finished = time.perf_counter() - start
    assert finished > 1.5, "the spin kernel did not hold the stream; the test proves nothing"
    assert issued < 0.5, f"issuing 20 steps took {issued:.2f} s: something waited for the GPU"
    assert np.isfinite(to_host(losses[5:25])).all()


@needs_gpu
def test_200_steps_on_gpu_follow_the_cpu(on_cupy):
    x, t = data()
    runs = {}
    for name in ("numpy", "cupy"):
        backends.use(name)
        net = TwoLayerNet(784, 50, 10, seed=3)
        trainer = Trainer(net, x, t, x[:500], t[:500], iters=200, mini_batch_size=100,
                          optimizer="SGD", optimizer_param={"lr": 0.1}, verbose=False, seed=4)
        trainer.train()
        runs[name] = (np.array(trainer.train_loss_list),
                      {k: to_host(v) for k, v in net.params.items()})
    (cpu_loss, cpu_params), (gpu_loss, gpu_params) = runs["numpy"], runs["cupy"]
    assert len(gpu_loss) == 200
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=2e-4)
    for key, value in cpu_params.items():
        np.testing.assert_allclose(gpu_params[key], value, rtol=1e-3,
                                   atol=1e-4 * np.abs(value).max(), err_msg=key)


@needs_gpu
def test_gradient_check_in_float64_on_cupy(on_cupy):
    from framework.gradient import gradient_check
    rng = np.random.default_rng(1)
    net = TwoLayerNet(784, 50, 10, dtype="float64", seed=0)
    x, t = on_cupy.asarray(rng.random((3, 784))), on_cupy.asarray([1, 4, 7])
    for key, (mean_abs, max_rel) in gradient_check(net, x, t).items():
        assert mean_abs < 1e-7 and max_rel < 1e-6, key


@needs_gpu
def test_the_trial_and_the_evaluations_leave_nothing_cached_in_the_users_pool(on_cupy):
    """graph='auto' times a few eager steps against the graph, and each epoch evaluates:
    their blocks come from the backend's scratch pool, whose cache is freed after each,
    so CuPy's default pool (the user's) caches no more than before training, and the
    scratch pool holds only blocks still in use."""
    from models import SimpleConvNet
    cupy = on_cupy.xp
    rng = np.random.default_rng(0)
    x = rng.random((600, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, 600).astype(np.uint8)
    default = cupy.get_default_memory_pool()
    trainer = Trainer(SimpleConvNet(seed=0), x, t, x[:500], t[:500], epochs=2,
                      mini_batch_size=100, optimizer="Adam", optimizer_param={"lr": 0.001},
                      verbose=False, seed=0, graph="auto")
    cached_before = default.total_bytes() - default.used_bytes()
    trainer.train()
    cached_after = default.total_bytes() - default.used_bytes()
    if trainer.step_mode == "cuda-graph":  # eager steps cache their own blocks there, rightly
        assert cached_after <= cached_before + 2**20, (cached_before, cached_after)
    scratch = on_cupy._scratch_pools()[cupy.cuda.Device().id]
    assert scratch.total_bytes() == scratch.used_bytes()
