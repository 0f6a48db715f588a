"""What the benchmark measures beside the training steps: the products' floor, the
numerical gradient, the data check at the door, and the evaluation's memory."""

import statistics
import time
import tracemalloc

import numpy as np

import backends
from framework.data import check_data
from models import TwoLayerNet
from scripts.benchmark import book
from scripts.benchmark.harness import log
from scripts.benchmark.nets import SIZES
from scripts.benchmark.variants import TIMED_BACKENDS


def gemm_floor(device, hidden, batch, repeats):
    """Median time of the two-layer step's five matrix products (forward 2, backward 3),
    float32, on BLAS's own threads: ``(ms, GFLOP/s, flops)``."""
    backend = backends.use(device)
    rng = np.random.default_rng(1)
    d_in, d_h, d_out = SIZES[0], hidden, SIZES[2]

    def arr(*shape):
        return backend.asarray(rng.standard_normal(shape), "float32")
    x, w1, w2 = arr(batch, d_in), arr(d_in, d_h), arr(d_h, d_out)
    h, d1, d2 = arr(batch, d_h), arr(batch, d_h), arr(batch, d_out)
    products = [lambda: x @ w1, lambda: h @ w2, lambda: x.T @ d1, lambda: h.T @ d2,
                lambda: d2 @ w2.T]
    reps = 200
    times = []
    for _ in range(repeats + 1):
        backend.synchronize()
        start = time.perf_counter()
        for _ in range(reps):
            for product in products:
                product()
        backend.synchronize()
        times.append((time.perf_counter() - start) / reps)
    flops = 2 * batch * (d_in * d_h + d_h * d_out) + 2 * batch * (d_in * d_h + d_h * d_out
                                                                  + d_out * d_h)
    seconds = statistics.median(times[1:])
    return 1e3 * seconds, flops / seconds / 1e9, flops


def numerical_gradient_rows(hidden, repeats):
    """The full numerical gradient: the book's np.nditer loop against ours, on the same loss.

    Both differentiate xpnet's TwoLayerNet loss (the book's own loss adds
    1e-7 inside its log, a slightly different function), so the maximum
    difference checks our vectorised gradient against the element-by-element
    definition.
    """
    rng = np.random.default_rng(2)
    x, t = rng.random((3, SIZES[0])), rng.integers(0, 10, 3)
    rows = []
    backends.use("numpy")
    ref = TwoLayerNet(SIZES[0], hidden, SIZES[2], dtype="float64", seed=3)
    n_params = sum(p.size for p in ref.params.values())
    log(f"  book's element-by-element loop, {n_params} parameters")
    start = time.perf_counter()
    expected = {key: book.numerical_gradient(lambda _: ref.loss(x, t), ref.params[key])
                for key in ref.params}
    book_s = time.perf_counter() - start
    rows.append({"method": "book's loop (np.nditer), element by element", "device": "numpy",
                 "seconds": book_s, "speedup": 1.0, "diff": 0.0})
    for device in [b for b in backends.available() if b in TIMED_BACKENDS]:
        backend = backends.use(device)
        net = TwoLayerNet(SIZES[0], hidden, SIZES[2], dtype="float64", seed=3)
        xd, td = backend.asarray(x), backend.asarray(t)
        times = []
        for _ in range(repeats):
            backend.synchronize()
            start = time.perf_counter()
            got = net.numerical_gradient(xd, td)
            backend.synchronize()
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        diff = max(float(np.abs(backends.to_numpy(got[k]) - expected[k]).max()) for k in expected)
        rows.append({"method": "xpnet numerical_gradient, vectorised", "device": device,
                     "seconds": seconds, "speedup": book_s / seconds, "diff": diff})
    return rows, n_params


def door_check_cost(data, rows, repeats):
    """Time of ``check_data`` over the training set against one epoch of the Trainer's steps."""
    backends.use("numpy")
    x, t = data
    times = []
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        check_data("benchmark", x, t, 10)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    trainer = next((r for r in rows if r.kind == "xpnet-trainer" and r.device == "numpy"), None)
    epoch = trainer.ms / 1e3 * (x.shape[0] // trainer.batch) if trainer else None
    return seconds, epoch, (trainer.hidden, trainer.batch) if trainer else None


def evaluation_memory(data):
    """Peak traced host memory of accuracy over the whole training set: the book's vs ours."""
    x, t = data
    backends.use("numpy")
    ref = book.TwoLayerNet(*SIZES, dtype=np.float64)  # the book's float64 weights
    ours = TwoLayerNet(*SIZES, seed=0)
    out = []
    for name, fn in (("book: network.accuracy(x_train, t_train), float64 weights",
                      lambda: ref.accuracy(x, t)),
                     ("xpnet: network.accuracy(x_train, t_train), batches of 10000",
                      lambda: ours.accuracy(x, t))):
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out.append((name, peak / 2**20))
    return out
