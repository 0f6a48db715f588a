"""The framework's cost per step: what a step pays beyond NumPy's own work, measured so that
it also runs on older trees.

``python scripts/benchmark/overhead.py MEASURE`` (with a tree's folder first on
``PYTHONPATH``) prints one JSON object. It uses only what every xpnet since a633f91
has (``backends.use``, ``TwoLayerNet``, ``SGD``, ``gradient``, ``numerical_gradient``;
the ConvNets since d47c328), and imports nothing from ``scripts``, so
``scripts/benchmark/ab.py`` can run this very file against older commits. MEASURE:

``tiny``
    TwoLayerNet(4, 4, 3) at batch 2, float32, where NumPy's work is negligible: the
    step (``gradient`` then ``SGD.update``) against the same step written by hand in
    NumPy, windows interleaved in this one process: each median and the median of the
    paired ratios.
``calls``
    Python-level calls (``sys.setprofile``'s ``call`` and ``c_call`` events) in one
    tiny step.
``book``
    The book's step, TwoLayerNet(784, 50, 10) at batch 100, against careful
    hand-written NumPy (temporaries in place), the same batches, interleaved.
``numgrad``
    TwoLayerNet(784, 10, 10)'s full numerical gradient at batch 3, float64: seconds.
``conv:BACKEND:NET``
    A SimpleConvNet (``simple``) or DeepConvNet (``deep``) step at batch 32 on BACKEND:
    milliseconds, the median of 7 windows (of 12 and 4 steps).
``dense:BACKEND:ACTIVATION``
    A MultiLayerNet(784, [100, 100], 10) step with ``relu`` or ``sigmoid`` hidden layers
    at batch 100 on BACKEND: milliseconds, the median of 7 windows of 20 steps.
``batchnorm:BACKEND``
    A MultiLayerNetExtend(784, [100, 100], 10) step with batch norm (ReLU) at batch 100 on
    BACKEND: milliseconds, the median of 7 windows of 20 steps.
``decay:BACKEND``
    The ``dense`` ReLU step with weight decay (``weight_decay_lambda=0.1``).
``optimizer:BACKEND:NAME``
    The ``dense`` ReLU step updated by the optimizer NAME (``sgd``, ``momentum``,
    ``nesterov``, ``adagrad``, ``rmsprop`` or ``adam``, the book's defaults, lr 0.01).
``host:BACKEND``
    ``asarray`` of a host batch (100 x 784 float32, what a hand-written loop sends each
    step) on BACKEND: microseconds a call, the median of 7 windows of 200 calls, each
    window waiting for the last array.
"""

import json
import statistics
import sys
import time

import numpy as np


def _rounds(fns, rounds, steps):
    """Per-step seconds of each of ``fns``, ``rounds`` windows of ``steps`` each, their
    order rotating from round to round; one warm-up window each first."""
    times = [[] for _ in fns]
    for f in fns:
        for _ in range(max(1, steps // 4)):
            f()
    for r in range(rounds):
        order = list(range(len(fns)))
        order = order[r % len(fns):] + order[:r % len(fns)]
        for i in order:
            f = fns[i]
            start = time.perf_counter()
            for _ in range(steps):
                f()
            times[i].append((time.perf_counter() - start) / steps)
    return times


def _paired(times, rounds):
    xs, bs = times
    return {"xpnet_us": 1e6 * statistics.median(xs), "bare_us": 1e6 * statistics.median(bs),
            "ratio": statistics.median(x / b for x, b in zip(xs, bs)), "rounds": rounds}


class BareTwoLayer:
    """Affine - ReLU - Affine - softmax cross-entropy and SGD, by hand, temporaries in place."""

    def __init__(self, params, lr):
        import backends
        self.W1, self.b1, self.W2, self.b2 = (np.array(backends.to_numpy(params[k]))
                                              for k in ("W1", "b1", "W2", "b2"))
        self.lr = lr

    def step(self, x, t):
        """One step on ``(x, t)``: the parameters updated in place; returns the loss."""
        W1, b1, W2, b2, lr = self.W1, self.b1, self.W2, self.b2, self.lr
        n = x.shape[0]
        rows = np.arange(n)
        a = x @ W1
        a += b1
        keep = a > 0
        a *= keep
        s = a @ W2
        s += b2
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        z = e.sum(axis=1, keepdims=True)
        e /= z
        loss = (np.log(z)[:, 0] - s[rows, t]).sum() / n
        e[rows, t] -= 1
        e *= 1 / n
        dW2 = a.T @ e
        db2 = e.sum(axis=0)
        dh = e @ W2.T
        dh *= keep
        dW1 = x.T @ dh
        db1 = dh.sum(axis=0)
        W1 -= lr * dW1
        b1 -= lr * db1
        W2 -= lr * dW2
        b2 -= lr * db2
        return loss


def _two_layer(sizes, batch, batches=1):
    import backends
    from framework.optimizers import SGD
    from models import TwoLayerNet
    backends.use("numpy")
    net = TwoLayerNet(*sizes, seed=0)
    rng = np.random.default_rng(1)
    data = [(rng.random((batch, sizes[0]), dtype=np.float32),
             rng.integers(0, sizes[2], batch)) for _ in range(batches)]
    return net, SGD(lr=0.01), data


def tiny(rounds=15, steps=2000):
    net, opt, [(x, t)] = _two_layer((4, 4, 3), 2)
    bare = BareTwoLayer(net.params, 0.01)
    times = _rounds([lambda: opt.update(net.params, net.gradient(x, t)),
                     lambda: bare.step(x, t)], rounds, steps)
    return _paired(times, rounds)


def calls(steps=50):
    net, opt, [(x, t)] = _two_layer((4, 4, 3), 2)
    for _ in range(20):
        opt.update(net.params, net.gradient(x, t))
    count = [0]

    def profile(frame, event, arg):
        if event in ("call", "c_call"):
            count[0] += 1
    sys.setprofile(profile)
    try:
        for _ in range(steps):
            opt.update(net.params, net.gradient(x, t))
    finally:
        sys.setprofile(None)
    return {"calls": (count[0] - 1) // steps}  # less setprofile(None) itself


def book(rounds=11, steps=40):
    net, opt, data = _two_layer((784, 50, 10), 100, batches=steps)
    bare = BareTwoLayer(net.params, 0.01)

    def xpnet_window():
        for x, t in data:
            opt.update(net.params, net.gradient(x, t))

    def bare_window():
        for x, t in data:
            bare.step(x, t)
    times = _rounds([xpnet_window, bare_window], rounds, 1)
    result = _paired(times, rounds)
    result["xpnet_us"] /= steps
    result["bare_us"] /= steps
    return result


def numgrad(repeats=5):
    import backends
    from models import TwoLayerNet
    backends.use("numpy")
    net = TwoLayerNet(784, 10, 10, dtype="float64", seed=3)
    rng = np.random.default_rng(2)
    x, t = rng.random((3, 784)), rng.integers(0, 10, 3)
    net.numerical_gradient(x, t)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net.numerical_gradient(x, t)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times)}


def _windows(window, steps, windows=7):
    """Seconds a step of ``window()`` (which runs ``steps``), the median of ``windows``
    after one to warm up."""
    window()
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        window()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def _wait(backend, array=None):
    """Wait for the backend's queued work (and ``array``'s, where it can say)."""
    if array is not None and hasattr(array, "block_until_ready"):
        array.block_until_ready()
    if hasattr(backend, "synchronize"):
        backend.synchronize()


def conv(backend_name, which, batch=32, windows=7, steps=None):
    import backends
    from framework.optimizers import SGD
    from models import DeepConvNet, SimpleConvNet
    backend = backends.use(backend_name)
    net = (SimpleConvNet if which == "simple" else DeepConvNet)(seed=0)
    steps = steps or (12 if which == "simple" else 4)
    opt = SGD(lr=0.01)
    rng = np.random.default_rng(4)
    x = backend.asarray(rng.random((batch, 1, 28, 28), dtype=np.float32))
    t = backend.asarray(rng.integers(0, 10, batch))

    def window():
        for _ in range(steps):
            opt.update(net.params, net.gradient(x, t))
        _wait(backend)
    return {"ms": 1e3 * _windows(window, steps, windows)}


def dense(backend_name, activation, batch=100, steps=20, batchnorm=False, decay=0,
          optimizer="sgd"):
    import backends
    from framework.optimizers import get_optimizer
    from models import MultiLayerNet, MultiLayerNetExtend
    backend = backends.use(backend_name)
    if batchnorm:
        net = MultiLayerNetExtend(784, [100, 100], 10, activation=activation,
                                  weight_init_std=activation, use_batchnorm=True, seed=0)
    else:
        net = MultiLayerNet(784, [100, 100], 10, activation=activation,
                            weight_init_std=activation, weight_decay_lambda=decay, seed=0)
    opt = get_optimizer(optimizer, {"lr": 0.01})
    rng = np.random.default_rng(4)
    x = backend.asarray(rng.random((batch, 784), dtype=np.float32))
    t = backend.asarray(rng.integers(0, 10, batch))

    def window():
        for _ in range(steps):
            opt.update(net.params, net.gradient(x, t))
        _wait(backend)
    return {"ms": 1e3 * _windows(window, steps)}


def batchnorm(backend_name):
    return dense(backend_name, "relu", batchnorm=True)


def decay(backend_name):
    return dense(backend_name, "relu", decay=0.1)


def optimizer(backend_name, name):
    return dense(backend_name, "relu", optimizer=name)


def host(backend_name, calls=200):
    import backends
    backend = backends.use(backend_name)
    batch = np.random.default_rng(5).random((100, 784), dtype=np.float32)

    def window():
        for _ in range(calls):
            array = backend.asarray(batch)
        _wait(backend, array)
    return {"us": 1e6 * _windows(window, calls)}


MEASURES = {"tiny": tiny, "calls": calls, "book": book, "numgrad": numgrad}
NETS = ("simple", "deep")
ACTIVATIONS = ("relu", "sigmoid")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
#: the measures named with their arguments: (function, pattern, its last part's name and
#: choices where it has them, an example)
FORMS = {"conv": (conv, "conv:BACKEND:NET", "NET", NETS, "conv:numpy:simple"),
         "dense": (dense, "dense:BACKEND:ACTIVATION", "ACTIVATION", ACTIVATIONS,
                   "dense:jax:sigmoid"),
         "batchnorm": (batchnorm, "batchnorm:BACKEND", None, None, "batchnorm:jax"),
         "decay": (decay, "decay:BACKEND", None, None, "decay:jax"),
         "optimizer": (optimizer, "optimizer:BACKEND:NAME", "NAME", OPTIMIZERS,
                       "optimizer:jax:adam"),
         "host": (host, "host:BACKEND", None, None, "host:jax")}
PATTERNS = ", ".join(form[1] for form in FORMS.values())
USAGE = f"usage: overhead.py MEASURE (one of {', '.join(MEASURES)}, or {PATTERNS})"


def chosen(name):
    """The measure ``name`` names, as a function of no arguments; ValueError saying what
    is expected for a name it does not know."""
    form = FORMS.get(name.split(":")[0]) if ":" in name else None
    if form is not None:
        run, pattern, last, choices, example = form
        parts = name.split(":")
        if len(parts) != len(pattern.split(":")) or not parts[1] or \
                (choices and parts[2] not in choices):
            which = f" with {last} one of {', '.join(choices)}" if choices else ""
            raise ValueError(f"{name!r}: expected {pattern}{which} ({example}, say)")
        return lambda: run(*parts[1:])
    if name not in MEASURES:
        raise ValueError(f"unknown measure {name!r}: expected one of "
                         f"{', '.join(MEASURES)}, or {PATTERNS}")
    return MEASURES[name]


def measure(name):
    return chosen(name)()


def main(argv):
    """The command line: one measure's JSON on stdout and 0, or what was wrong and 2."""
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        run = chosen(argv[0])
    except ValueError as e:
        print(f"{USAGE}\noverhead.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
