"""Benchmark: xpnet's training step against the book's loop and PyTorch, side by side.

Times the training step of TwoLayerNet(784, 50, 10) on synthetic MNIST-shaped
data (seeded; no download), float32, at batch 100 (the book's) and 1000, and
the wider 784-1000-10 net of DeZero's GPU example at batch 100:

  xpnet-trainer  the Trainer, progress bar on, on every available backend (on CuPy it
                 replays each step as a CUDA graph where it can: the step column says)
  xpnet-eager    CuPy only: the Trainer with graph=False (fused kernels, eager launches)
  xpnet-unfused  CuPy only: graph=False and the fused kernels off (plain CuPy operations,
                 the obvious implementation)
  xpnet-im2col   NumPy, convolutional nets only: the Trainer without the compiled kernels
                 (im2col + BLAS, as where no C compiler is found)
  xpnet-loop     the same layers in a bare eager loop (what the Trainer adds is the difference)
  numpy-bare     the same step as one hand-written NumPy function, no framework (temporaries
                 in place, loss kept): what NumPy alone does, the layers' floor
  book-loop      the book's train_neuralnet.py loop in NumPy (scripts/book_reference.py):
                 one-hot labels, np.random.choice batches, loss recomputed after the update
  torch-eager    PyTorch eager on the same device, when torch imports; on a GPU in full
                 float32 as xpnet (TF32 off: cuDNN's convolutions default to it)

Each row is timed in repeated windows of one epoch (N / batch steps),
interleaved across rows in a rotating order after a warm-up window, with a
pause between windows so one row's spinning thread pools do not tax the next,
and the median is reported;
on a GPU the clock is read after synchronising. On the CPU xpnet runs NumPy's
BLAS on one thread and splits its work across the cores itself
(backends/host_ops.py); the NumPy reference rows (numpy-bare, book-loop, the
product floor, the book's numerical gradient) run with BLAS's own threads,
as they would without xpnet. Peak memory is measured in a
separate process per row (host RSS, including the dataset; GPU: CuPy pool or
PyTorch allocator bytes). Ratios are against the book loop and against
PyTorch on the same device, and, for GPU rows, against xpnet's own CPU step,
measured in the same run. The arithmetic floor is the time of the step's five
matrix products alone, measured here too, and what xpnet's layers and Trainer
add over NumPy alone is given as their paired ratio to numpy-bare.

Then SimpleConvNet and DeepConvNet (--conv-batch, on --conv-n synthetic
images): xpnet's Trainer, the book's code (book_reference.py, float32 weights)
and PyTorch eager with the same layer shapes; on NumPy also the Trainer with the
compiled kernels off (xpnet-im2col: what backends/cpu_kernels.py
gains, when a C compiler built it); on CuPy also the eager step, and
the eager step with im2col, col2im and pooling as plain CuPy operations
(xpnet-unfused: what backends/conv_kernels.py gains).

The same rows (less the unfused and bare-loop ones) for chapter 6's
MultiLayerNet(784, [100] * 5, 10), with and without batch norm, at batch 100
(--deep-batch): xpnet's Trainer, the same step hand-written in NumPy, the
book's MultiLayerNetExtend loop (scripts/book_reference.py) and PyTorch eager.

Also times the data check every dataset passes at the door (against one
epoch of the Trainer), the full numerical gradient of TwoLayerNet (batch 3, float64),
vectorised, against the book's element-by-element loop, and the host memory
of evaluating accuracy on the training set.

The Markdown tables come last on stdout; --out also writes them to a file.
--smoke runs a few steps of every row (CI: it checks that every row is
produced, never a time).
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import backends  # noqa: E402
from framework.data import DeviceBatches, check_data  # noqa: E402
from framework.files import atomic_open  # noqa: E402
from framework.optimizers import SGD  # noqa: E402
from backends.host import build as cpu_kernels  # noqa: E402

from backends import ops_for  # noqa: E402
from framework.trainer import Trainer  # noqa: E402
from models import (DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet,  # noqa: E402
                    TwoLayerNet)
from scripts import book_reference as book  # noqa: E402

SIZES = (784, 50, 10)
LR = 0.1


def synthetic(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, SIZES[0]), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


def synthetic_images(n, seed=0):
    x, t = synthetic(n, seed)
    return x.reshape(n, 1, 28, 28), t


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# --- the rows -------------------------------------------------------------------------

class Row:
    """One variant at one size: ``setup()`` once, then ``window()`` runs ``steps`` steps."""

    kind = ""

    def __init__(self, device, batch, hidden, data):
        self.device, self.batch, self.hidden, self.data = device, batch, hidden, data
        self.steps = max(data[0].shape[0] // batch, 1)
        self.times = []

    @property
    def key(self):
        return f"{self.kind}:{self.device}:{self.batch}:{self.hidden}"

    @property
    def config(self):
        return (self.hidden, self.batch)

    def sync(self):
        pass

    numpy_blas = False  # True: a NumPy reference row, run with BLAS's own threads

    def timed(self):
        self.sync()
        start = time.perf_counter()
        self.window()
        self.sync()
        return time.perf_counter() - start

    def gpu_bytes(self):
        return None


class XpnetRow(Row):
    fused = True  # CuPy's fused kernels (backends.cuda_ops); set before every window
    compiled = True  # the host's compiled kernels (backends.cpu_kernels); the same

    def make_network(self):
        return TwoLayerNet(SIZES[0], self.hidden, SIZES[2], seed=0)

    def setup(self):
        self.backend = backends.use(self.device)
        self.network = self.make_network()
        self.ops = ops_for(self.network.params["W1"])

    def sync(self):
        self.backend.synchronize()

    def timed(self):
        if hasattr(self.ops, "fused"):
            self.ops.fused = self.fused
        if hasattr(self.ops, "compiled"):
            self.ops.compiled = self.compiled
        try:
            return super().timed()
        finally:
            if hasattr(self.ops, "fused"):
                self.ops.fused = True
            if hasattr(self.ops, "compiled"):
                self.ops.compiled = True

    def gpu_bytes(self):
        if self.backend.name == "cupy":
            return self.backend.xp.get_default_memory_pool().total_bytes()
        return None


class XpnetTrainer(XpnetRow):
    kind = "xpnet-trainer"
    graph = "auto"

    @property
    def step(self):
        mode = getattr(getattr(self, "trainer", None), "step_mode", None) or ""
        return mode.split(" (")[0] if mode else "eager"

    def gpu_bytes(self):
        return self.trainer.gpu_pool_bytes() if self.backend.name == "cupy" else None

    def setup(self):
        super().setup()
        x, t = self.data
        # A 100-sample test set and evaluation subset: the epoch-end report
        # stays in the window without its cost standing in for the step's.
        self.trainer = Trainer(self.network, x, t, x[:100], t[:100], epochs=1,
                               mini_batch_size=self.batch, optimizer="SGD",
                               optimizer_param={"lr": LR}, evaluate_sample_num_per_epoch=100,
                               verbose=True, seed=0, graph=self.graph)
        self.steps = self.trainer.iter_per_epoch

    def window(self):
        # the bar and epoch lines are drawn in full, just not onto the table
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull), \
                contextlib.redirect_stdout(devnull):
            self.trainer.train(epochs=1)


class XpnetEager(XpnetTrainer):
    kind = "xpnet-eager"
    graph = False


class XpnetUnfused(XpnetTrainer):
    kind = "xpnet-unfused"
    graph = False
    fused = False


class XpnetLoop(XpnetRow):
    kind = "xpnet-loop"
    step = "eager"

    def setup(self):
        super().setup()
        self.batches = DeviceBatches(*self.data, self.batch, seed=0, backend=self.backend)
        self.optimizer = SGD(lr=LR)
        self.steps = len(self.batches)

    def window(self):
        network, optimizer = self.network, self.optimizer
        for x, t in self.batches:
            optimizer.update(network.params, network.gradient(x, t))


def bare_softmax_cross_entropy(s, t, rows):
    """The hand-written rows' loss and its gradient, in place on the scores ``s``:
    ``(mean cross-entropy, (softmax(s) - onehot(t)) / N)``."""
    b = s.shape[0]
    s -= s.max(axis=1, keepdims=True)
    e = np.exp(s)
    z = e.sum(axis=1, keepdims=True)
    e /= z
    loss = (np.log(z)[:, 0] - s[rows, t]).sum() / b
    e[rows, t] -= 1
    e *= 1 / b
    return loss, e


class NumpyBare(Row):
    """The step with nothing around it: the measure of what the layers and the Trainer cost."""

    kind = "numpy-bare"
    numpy_blas = True

    def setup(self):
        self.x, self.t = self.data
        params = TwoLayerNet(SIZES[0], self.hidden, SIZES[2], seed=0).params  # xpnet's start
        self.W1, self.b1, self.W2, self.b2 = (backends.to_numpy(params[k]).copy()
                                              for k in ("W1", "b1", "W2", "b2"))
        self.rng = np.random.default_rng(0)
        self.rows = np.arange(self.batch)
        self.losses = np.empty(self.steps, dtype=np.float32)

    def window(self):
        x_all, t_all, b, rows = self.x, self.t, self.batch, self.rows
        W1, b1, W2, b2 = self.W1, self.b1, self.W2, self.b2
        order = self.rng.permutation(x_all.shape[0]).astype(np.int32)
        for i in range(self.steps):
            idx = order[i * b:(i + 1) * b]
            x, t = np.take(x_all, idx, axis=0), np.take(t_all, idx, axis=0)
            a = x @ W1
            a += b1
            keep = a > 0
            a *= keep
            s = a @ W2
            s += b2
            self.losses[i], e = bare_softmax_cross_entropy(s, t, rows)
            dW2 = a.T @ e
            db2 = e.sum(axis=0)
            dh = e @ W2.T
            dh *= keep
            dW1 = x.T @ dh
            db1 = dh.sum(axis=0)
            W1 -= LR * dW1
            b1 -= LR * db1
            W2 -= LR * dW2
            b2 -= LR * db2


class BookLoop(Row):
    kind = "book-loop"
    numpy_blas = True
    lr = LR

    def make_book_network(self):
        return book.TwoLayerNet(SIZES[0], self.hidden, SIZES[2], seed=0)

    def setup(self):
        x, t = self.data
        self.x, self.t = x, np.eye(10, dtype=np.float32)[t]  # one-hot, as the book loads it
        self.network = self.make_book_network()
        np.random.seed(0)

    def window(self):
        book.train_steps(self.network, self.x, self.t, self.steps, self.batch, self.lr)


class TorchEager(Row):
    kind = "torch-eager"
    lr = LR

    def build_model(self):
        nn = self.torch.nn
        return nn.Sequential(nn.Linear(SIZES[0], self.hidden), nn.ReLU(),
                             nn.Linear(self.hidden, SIZES[2]))

    def setup(self):
        import torch
        self.torch = torch
        self.dev = torch.device("cpu" if self.device == "numpy" else "cuda")
        # float32 as xpnet computes it: cuDNN's convolutions would otherwise run in TF32
        # (10-bit mantissas) on an H100 by default
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.manual_seed(0)
        self.model = self.build_model().to(self.dev)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        x, t = self.data
        self.x = torch.from_numpy(x).to(self.dev)
        self.t = torch.from_numpy(t.astype(np.int64)).to(self.dev)
        self.generator = torch.Generator(device=self.dev).manual_seed(0)

    def sync(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def gpu_bytes(self):
        if self.dev.type == "cuda":
            return self.torch.cuda.max_memory_allocated()
        return None

    def window(self):
        torch, model, optimizer, b = self.torch, self.model, self.optimizer, self.batch
        perm = torch.randperm(self.x.shape[0], device=self.dev, generator=self.generator)
        for i in range(self.steps):
            idx = perm[i * b:(i + 1) * b]
            loss = torch.nn.functional.cross_entropy(model(self.x[idx]), self.t[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


ROW_TYPES = {cls.kind: cls for cls in (XpnetTrainer, XpnetEager, XpnetUnfused, XpnetLoop,
                                       NumpyBare, BookLoop, TorchEager)}


# --- chapter 6's deeper nets: MultiLayerNet(784, [100] * 5, 10), ReLU, He init ----------------

DEEP_HIDDEN = [100] * 5
DEEP_NETS = {"5x100": False, "5x100-bn": True}  # name -> batch norm
DEEP_LR = 0.01


def deep_network(net):
    """xpnet's deep net of this name, on the current backend."""
    if DEEP_NETS[net]:
        return MultiLayerNetExtend(SIZES[0], DEEP_HIDDEN, SIZES[2], use_batchnorm=True, seed=0)
    return MultiLayerNet(SIZES[0], DEEP_HIDDEN, SIZES[2], seed=0)


class DeepRow:
    """Mixed into a row: ``hidden`` names the deep net (``5x100`` or ``5x100-bn``)."""

    lr = DEEP_LR

    def make_network(self):
        return deep_network(self.hidden)


class DeepXpnetTrainer(DeepRow, XpnetTrainer):
    def setup(self):
        XpnetRow.setup(self)
        x, t = self.data
        self.trainer = Trainer(self.network, x, t, x[:100], t[:100], epochs=1,
                               mini_batch_size=self.batch, optimizer="SGD",
                               optimizer_param={"lr": self.lr}, evaluate_sample_num_per_epoch=100,
                               verbose=True, seed=0, graph=self.graph)
        self.steps = self.trainer.iter_per_epoch


class DeepXpnetEager(DeepXpnetTrainer):
    kind = "xpnet-eager"
    graph = False


class DeepNumpyBare(Row):
    """The deep step hand-written in NumPy: one loop down the layers and one back up."""

    kind = "numpy-bare"
    numpy_blas = True

    def setup(self):
        net = deep_network(self.hidden)  # xpnet's start
        self.bn = DEEP_NETS[self.hidden]
        n = len(DEEP_HIDDEN) + 1
        self.W = [backends.to_numpy(net.params[f"W{i}"]).copy() for i in range(1, n + 1)]
        self.b = [backends.to_numpy(net.params[f"b{i}"]).copy() for i in range(1, n + 1)]
        self.gamma = [np.ones(h, np.float32) for h in DEEP_HIDDEN]
        self.beta = [np.zeros(h, np.float32) for h in DEEP_HIDDEN]
        self.mean = [np.zeros(h, np.float32) for h in DEEP_HIDDEN]
        self.var = [np.ones(h, np.float32) for h in DEEP_HIDDEN]
        self.rng = np.random.default_rng(0)
        self.rows = np.arange(self.batch)
        self.losses = np.empty(self.steps, dtype=np.float32)

    def window(self):
        x_all, t_all, b, rows, lr = *self.data, self.batch, self.rows, DEEP_LR
        W, bias, gamma, beta = self.W, self.b, self.gamma, self.beta
        order = self.rng.permutation(x_all.shape[0]).astype(np.int32)
        hidden = len(DEEP_HIDDEN)
        for i in range(self.steps):
            idx = order[i * b:(i + 1) * b]
            a, t = np.take(x_all, idx, axis=0), np.take(t_all, idx, axis=0)
            saved = []
            for l in range(hidden):
                z = a @ W[l]
                z += bias[l]
                norm = None
                if self.bn:
                    mu = z.mean(axis=0)
                    z -= mu
                    var = (z * z).mean(axis=0)
                    std = np.sqrt(var + 1e-6)
                    z /= std
                    norm = (z.copy(), std)
                    z *= gamma[l]
                    z += beta[l]
                    self.mean[l] *= 0.9
                    self.mean[l] += 0.1 * mu
                    self.var[l] *= 0.9
                    self.var[l] += 0.1 * var
                keep = z > 0
                z *= keep
                saved.append((a, keep, norm))
                a = z
            s = a @ W[hidden]
            s += bias[hidden]
            self.losses[i], d = bare_softmax_cross_entropy(s, t, rows)
            grads = [(a.T @ d, d.sum(axis=0))]
            d = d @ W[hidden].T
            bn_grads = []
            for l in reversed(range(hidden)):
                a_in, keep, norm = saved[l]
                d *= keep
                if self.bn:
                    xn, std = norm
                    dgamma = (xn * d).sum(axis=0)
                    dbeta = d.sum(axis=0)
                    d *= gamma[l]  # dxn
                    # dx = (dxn - mean(dxn) - xn mean(dxn xn)) / std
                    d -= d.mean(axis=0) + xn * (d * xn).mean(axis=0)
                    d /= std
                    bn_grads.append((dgamma, dbeta))
                grads.append((a_in.T @ d, d.sum(axis=0)))
                if l:
                    d = d @ W[l].T
            for l, (dW, db) in zip(reversed(range(hidden + 1)), grads):
                W[l] -= lr * dW
                bias[l] -= lr * db
            for l, (dgamma, dbeta) in zip(reversed(range(hidden)), bn_grads):
                gamma[l] -= lr * dgamma
                beta[l] -= lr * dbeta


class DeepBookLoop(BookLoop):
    lr = DEEP_LR

    def make_book_network(self):
        return book.MultiLayerNetExtend(SIZES[0], DEEP_HIDDEN, SIZES[2],
                                        use_batchnorm=DEEP_NETS[self.hidden], seed=0)


class DeepTorchEager(TorchEager):
    lr = DEEP_LR

    def build_model(self):
        nn = self.torch.nn
        layers, size = [], SIZES[0]
        for h in DEEP_HIDDEN:
            layers.append(nn.Linear(size, h))
            if DEEP_NETS[self.hidden]:
                layers.append(nn.BatchNorm1d(h, eps=1e-6))
            layers.append(nn.ReLU())
            size = h
        layers.append(nn.Linear(size, SIZES[2]))
        return nn.Sequential(*layers)


# --- chapters 7-8: SimpleConvNet and DeepConvNet -----------------------------------------------

CONV_NETS = ("simple", "deep")


def conv_network(net):
    return SimpleConvNet(seed=0) if net == "simple" else DeepConvNet(seed=0)


class ConvRow:
    """Mixed into a row: ``hidden`` names the convolutional net; the data are images."""

    lr = DEEP_LR

    def make_network(self):
        return conv_network(self.hidden)


class ConvXpnetTrainer(ConvRow, DeepXpnetTrainer):
    pass


class ConvXpnetEager(ConvRow, DeepXpnetEager):
    pass


class ConvXpnetUnfused(ConvXpnetEager):
    """CuPy only: the eager step with im2col, col2im and pooling as plain CuPy operations
    (a strided copy, fh * fw slice additions, three passes per window offset) instead of
    backends/conv_kernels.py's kernels: what the kernels gain."""
    kind = "xpnet-unfused"
    fused = False


class ConvXpnetIm2col(ConvXpnetTrainer):
    """NumPy only: the Trainer with the compiled kernels off (im2col, BLAS and
    col2im, as where no C compiler is found): what backends/cpu_kernels.py gains."""
    kind = "xpnet-im2col"
    compiled = False


class ConvBookLoop(BookLoop):
    lr = DEEP_LR

    def make_book_network(self):
        return book.SimpleConvNet() if self.hidden == "simple" else book.DeepConvNet()


class ConvTorchEager(TorchEager):
    lr = DEEP_LR

    def build_model(self):
        nn = self.torch.nn
        if self.hidden == "simple":
            return nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10))
        layers, c = [], 1
        for i, (fn, pad) in enumerate(((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))):
            layers += [nn.Conv2d(c, fn, 3, padding=pad), nn.ReLU()]
            if i % 2:
                layers.append(nn.MaxPool2d(2))
            c = fn
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(),
                             nn.Dropout(0.5), nn.Linear(50, 10), nn.Dropout(0.5))


def named_net_rows(nets, batch, data, torch_ok, trainer, eager, cpu_rows, torch_row,
                   unfused=None, im2col=None):
    """For each net: the Trainer on every backend (and its eager step on CuPy, and with
    ``unfused`` that step on plain CuPy operations; with ``im2col`` the NumPy Trainer
    without the compiled convolution), the CPU references (``cpu_rows``: the book's loop,
    numpy-bare), and PyTorch per device."""
    rows = []
    for net in nets:
        for device in backends.available():
            rows.append(trainer(device, batch, net, data))
            if device == "numpy" and im2col is not None and cpu_kernels.load()[0] is not None:
                rows.append(im2col(device, batch, net, data))
            if device == "cupy":
                rows.append(eager(device, batch, net, data))
                if unfused is not None:
                    rows.append(unfused(device, batch, net, data))
        rows += [row_type("numpy", batch, net, data) for row_type in cpu_rows]
        rows += [torch_row(device, batch, net, data) for device in torch_ok]
    return rows


def make_conv_rows(batch, data, torch_ok):
    return named_net_rows(CONV_NETS, batch, data, torch_ok, ConvXpnetTrainer, ConvXpnetEager,
                          [ConvBookLoop], ConvTorchEager, unfused=ConvXpnetUnfused,
                          im2col=ConvXpnetIm2col)


def make_deep_rows(batch, data, torch_ok):
    return named_net_rows(DEEP_NETS, batch, data, torch_ok, DeepXpnetTrainer, DeepXpnetEager,
                          [DeepNumpyBare, DeepBookLoop], DeepTorchEager)


def torch_devices():
    """Backends PyTorch can run here, named as ours ('numpy' meaning the CPU)."""
    try:
        import torch
    except Exception:
        return []
    return ["numpy"] + (["cupy"] if torch.cuda.is_available() else [])


def make_rows(configs, data, torch_ok):
    rows = []
    for hidden, batch in configs:
        for device in backends.available():
            rows.append(XpnetTrainer(device, batch, hidden, data))
            if device == "cupy":  # the GPU levers, one by one
                rows.append(XpnetEager(device, batch, hidden, data))
                rows.append(XpnetUnfused(device, batch, hidden, data))
            rows.append(XpnetLoop(device, batch, hidden, data))
        rows.append(NumpyBare("numpy", batch, hidden, data))
        rows.append(BookLoop("numpy", batch, hidden, data))
        for device in torch_ok:
            rows.append(TorchEager(device, batch, hidden, data))
    return rows


# --- measurements ---------------------------------------------------------------------

def time_rows(rows, repeats, pause):
    for row in rows:
        log(f"  setting up {row.key}")
        row.setup()
        row.timed()  # warm-up: first-call costs, allocator, BLAS threads
    for r in range(repeats):
        # Interleaved, so drift hits every row alike, and rotated, so no row always
        # follows the same one. Worker threads of OpenBLAS and PyTorch's OpenMP
        # busy-wait for a while after their work, taking a core from whatever
        # runs next: the pause lets them go to sleep first.
        for row in rows[r % len(rows):] + rows[:r % len(rows)]:
            time.sleep(pause)  # let the last row's BLAS/OpenMP threads stop spinning
            row.times.append(row.timed() / row.steps)
        log(f"  round {r + 1}/{repeats} done")
    for row in rows:
        row.ms = 1e3 * statistics.median(row.times)


def probe_memory(row_key, n, windows=1):
    """Run one row in this process and report its peak memory as JSON (for --probe)."""
    kind, device, batch, hidden = row_key.split(":")
    backends.tune_host_allocator()
    row = ROW_TYPES[kind](device, int(batch), int(hidden), synthetic(n))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS mark: measure the row, not the data generation
    except OSError:
        pass  # not Linux: the peak then includes generating the data
    row.setup()
    for _ in range(windows):
        row.timed()
    try:
        with open("/proc/self/status") as f:
            rss_mb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except OSError:
        import resource  # not Linux: the process's lifetime peak
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = row.gpu_bytes()
    print(json.dumps({"rss_mb": rss_mb, "gpu_mb": None if gpu is None else gpu / 2**20}))


def memory_of(row, n):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", row.key,
                        "--n", str(n)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, XPNET_BACKEND=row.device if row.kind.startswith("xpnet")
                                else os.environ.get("XPNET_BACKEND", "auto")))
    if r.returncode != 0:
        raise RuntimeError(f"memory probe of {row.key} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def gemm_floor(device, hidden, batch, repeats):
    """Median time of the step's five matrix products (forward 2, backward 3), float32."""
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
    if True:  # NumPy's floor, on BLAS's own threads
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
    if True:
        start = time.perf_counter()
        expected = {key: book.numerical_gradient(lambda _: ref.loss(x, t), ref.params[key])
                    for key in ref.params}
        book_s = time.perf_counter() - start
    rows.append({"method": "book's loop (np.nditer), element by element", "device": "numpy",
                 "seconds": book_s, "speedup": 1.0, "diff": 0.0})
    for device in backends.available():
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


# --- report ---------------------------------------------------------------------------------

def machine_lines():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"- CPU: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
             f"NumPy {np.__version__}; xpnet {ops_for(np.zeros(1))!r} (the NumPy reference "
             f"rows run with BLAS's own threads)"]
    try:
        import torch
        lines.append(f"- PyTorch {torch.__version__}, {torch.get_num_threads()} threads; "
                     f"full float32 on the GPU (TF32 off for cuDNN and matmul), cuDNN's "
                     f"defaults otherwise")
    except Exception:
        lines.append("- PyTorch: not installed (its rows are skipped)")
    if "cupy" in backends.available():
        b = backends.use("cupy")
        lines.append(f"- GPU: {b.device}; CuPy {b.xp.__version__}")
    else:
        lines.append("- GPU: none usable here (CuPy rows are skipped)")
    return lines


def paired_ratio(numerator, denominator):
    """Median over rounds of numerator's time / denominator's, both from the same round.

    Rows of one round ran seconds apart, so a slow patch of the machine
    (shared cores, a noisy neighbour) moves both; the per-round ratio is
    steadier than a ratio of medians.
    """
    return statistics.median(a / b for a, b in zip(numerator.times, denominator.times))


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def net_table(rows, title, note, references):
    """A table of rows whose ``hidden`` names a net, each against ``references``:
    ``(column, kind)`` pairs on the CPU (the book's loop, numpy-bare), then PyTorch on
    the same device and xpnet's CPU step."""
    columns = [c for c, _ in references] + ["vs PyTorch, same device", "vs xpnet CPU"]
    out = ["", title, "", note, "",
           "| variant | backend | step | net | batch | ms/step | " + " | ".join(columns) + " |",
           "|---|---|---|---|---:|---:|" + "---:|" * len(columns)]

    def find(kind, device, net):
        return next((r for r in rows if r.kind == kind and r.device == device
                     and r.hidden == net), None)

    def ratio(other, row):
        return fmt_ratio(paired_ratio(other, row) if other is not None else None)
    for row in rows:
        cells = [ratio(find(kind, "numpy", row.hidden), row) for _, kind in references]
        cells.append(ratio(find("torch-eager", row.device, row.hidden), row))
        cells.append(ratio(find("xpnet-trainer", "numpy", row.hidden), row)
                     if row.device != "numpy" else "-")
        out.append(f"| {row.kind} | {row.device} | {getattr(row, 'step', '-')} | {row.hidden} "
                   f"| {row.batch} | {row.ms:.3f} | " + " | ".join(cells) + " |")
    return out


def deep_report(rows):
    return net_table(
        rows, f"## Training step, MultiLayerNet(784, {DEEP_HIDDEN}, 10), ReLU, He init, float32",
        "`5x100-bn` is MultiLayerNetExtend with batch norm after each hidden Affine. SGD, lr "
        "0.01. Targets: on the CPU the Trainer at least 1.3x the book loop and within 15% of "
        "numpy-bare (the same step hand-written); on a GPU at least 3x PyTorch eager for 5x100.",
        [("vs book loop", "book-loop"), ("vs numpy-bare", "numpy-bare")])


def conv_report(rows, n):
    return net_table(
        rows, "## Training step, SimpleConvNet and DeepConvNet (the book's), float32",
        f"Windows of {n // rows[0].batch} steps on {n} synthetic 28x28 images; SGD, lr 0.01. "
        "Targets: on the CPU at least 4x the book's code and within 1.5x of PyTorch (vs "
        "PyTorch >= 0.67x); on a GPU at least 2x PyTorch eager for SimpleConvNet and 1.5x "
        "for DeepConvNet.", [("vs book loop", "book-loop")])


def report(rows, floors, trainer_cost, framework_cost, grad_rows, grad_params, eval_rows, args,
           deep_rows=(), conv_rows=(), door=None):
    out = ["# xpnet benchmark", "",
           f"{time.strftime('%Y-%m-%d')}, `python scripts/benchmark.py"
           f"{' --smoke' if args.smoke else ''}` (N = {args.n} synthetic samples, "
           f"{args.repeats} timed windows per row, median)", ""]
    out += machine_lines() + [""]
    out += ["## Training step, TwoLayerNet(784, hidden, 10), float32", "",
            "Speed-ups are the other row's time over this row's (higher is faster), the "
            "median of per-round ratios; `x floor` is this row's time over the five matrix "
            "products alone.", "",
            "| variant | backend | step | hidden | batch | ms/step | steps/s | s per 600 steps "
            "| peak memory MB | vs book loop | vs PyTorch, same device | vs xpnet CPU "
            "| x floor |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        book_row = next(r for r in rows if r.kind == "book-loop" and r.config == row.config)
        torch_row = next((r for r in rows if r.kind == "torch-eager" and r.config == row.config
                          and r.device == row.device), None)
        cpu_row = next((r for r in rows if r.kind == "xpnet-trainer" and r.device == "numpy"
                        and r.config == row.config), None)
        vs_cpu = paired_ratio(cpu_row, row) if cpu_row and row.device != "numpy" else None
        mem = "-"
        if row.mem is not None:
            mem = f"{row.mem['rss_mb']:.0f}"
            if row.mem.get("gpu_mb") is not None:
                mem += f" (GPU {row.mem['gpu_mb']:.1f})"
        floor = floors[(row.device,) + row.config][0]
        out.append(f"| {row.kind} | {row.device} | {getattr(row, 'step', '-')} "
                   f"| {row.hidden} | {row.batch} | {row.ms:.3f} "
                   f"| {1e3 / row.ms:.0f} "
                   f"| {0.6 * row.ms:.3f} | {mem} | {fmt_ratio(paired_ratio(book_row, row))} "
                   f"| {fmt_ratio(paired_ratio(torch_row, row) if torch_row else None)} "
                   f"| {fmt_ratio(vs_cpu)} | {row.ms / floor:.2f} |")
    out += ["", "Arithmetic floor (the step's matrix products, timed here):", ""]
    for (device, hidden, batch), (ms, gflops, flops) in floors.items():
        out.append(f"- {device}, hidden {hidden}, batch {batch}: "
                   f"{flops / 1e6:.1f} MFLOP of GEMM per step, "
                   f"{ms:.3f} ms ({gflops:.0f} GFLOP/s)")
    out += ["", "The Trainer's own cost (progress bar, loss buffer, epoch-end report), "
            "trainer over bare loop, both eager (on CuPy: xpnet-eager over xpnet-loop):", ""]
    for (device, hidden, batch), cost in trainer_cost.items():
        out.append(f"- {device}, hidden {hidden}, batch {batch}: {100 * cost:+.1f}%")
    out += ["", "What the framework costs over NumPy alone, xpnet's step over the same step "
            "hand-written (numpy-bare):", ""]
    for (kind, hidden, batch), cost in framework_cost.items():
        out.append(f"- {kind}, hidden {hidden}, batch {batch}: {100 * cost:+.1f}%")
    if deep_rows:
        out += deep_report(deep_rows)
    if conv_rows:
        out += conv_report(conv_rows, args.conv_n)
    out += ["", f"## Numerical gradient, TwoLayerNet(784, {args.grad_hidden}, 10), batch 3, "
            f"float64, {grad_params} parameters", "",
            "| method | backend | seconds | vs book loop | max abs diff vs book |",
            "|---|---|---:|---:|---:|"]
    for g in grad_rows:
        out.append(f"| {g['method']} | {g['device']} | {g['seconds']:.3f} | "
                   f"{fmt_ratio(g['speedup'])} | {g['diff']:.1e} |")
    out += ["", f"## Accuracy over the training set ({args.n} samples), peak traced host memory",
            "", "| evaluation | MB |", "|---|---:|"]
    for name, mb in eval_rows:
        out.append(f"| {name} | {mb:.1f} |")
    if door:
        seconds, epoch, config = door
        share = f", {100 * seconds / epoch:.1f}% of one epoch of the Trainer (hidden {config[0]}, " \
                f"batch {config[1]}, {epoch:.3f} s; target under 5%)" if epoch else ""
        out += ["", "## The data check at the door", "",
                f"`framework.data.check_data` over the {args.n} training samples: "
                f"{1e3 * seconds:.1f} ms{share}."]
    return "\n".join(out) + "\n"


def hidden_batch_pairs(text):
    """``"50:100,1000:100"`` -> ``[(50, 100), (1000, 100)]``; ``""`` -> ``[]`` (argparse type)."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            hidden, batch = (int(v) for v in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected hidden:batch pairs of positive integers separated by commas, "
                f"such as 50:100,1000:100; got {item!r} in {text!r}") from None
        if hidden < 1 or batch < 1:
            raise argparse.ArgumentTypeError(f"hidden and batch must be positive; got {item!r}")
        pairs.append((hidden, batch))
    return pairs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a few steps of every row, for CI")
    p.add_argument("--out", metavar="FILE", help="also write the Markdown tables here")
    p.add_argument("--n", type=int, help="synthetic training samples (default: 60000; smoke 2000)")
    p.add_argument("--repeats", type=int, help="timed windows per row (default: 11; smoke 1)")
    p.add_argument("--configs", type=hidden_batch_pairs, default="50:100,50:1000,1000:100",
                   help="hidden:batch pairs to time (default: %(default)s: the book's net at "
                        "batch 100 and 1000, and DeZero's 784-1000-10 GPU example)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    p.add_argument("--deep-batch", type=int, default=100, metavar="B",
                   help="batch of the MultiLayerNet rows (default: %(default)s; 0 skips them)")
    p.add_argument("--conv-batch", type=int, default=100, metavar="B",
                   help="batch of the convolutional rows (default: %(default)s; 0 skips them)")
    p.add_argument("--conv-n", type=int, metavar="N",
                   help="synthetic images for the convolutional rows, a window's worth "
                        "(default: 2000; smoke 200)")
    p.add_argument("--memory-configs", metavar="H:B,...", type=hidden_batch_pairs,
                   help="measure peak memory (a process per row) only for these hidden:batch "
                        "pairs, '' for none (default: every config; --smoke: the first)")
    p.add_argument("--pause", type=float, help="seconds between windows (default: 0.3; smoke 0)")
    p.add_argument("--probe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.n = args.n or (2000 if args.smoke else 60000)
    args.conv_n = args.conv_n or (200 if args.smoke else 2000)
    args.repeats = args.repeats or (1 if args.smoke else 11)
    args.grad_hidden = 5 if args.smoke else SIZES[1]
    args.pause = args.pause if args.pause is not None else (0.0 if args.smoke else 0.3)
    if args.probe:
        probe_memory(args.probe, args.n)
        return

    # Every row shares the allocator settings the Trainer makes (one process):
    # the book loop and PyTorch get the same steady heap as xpnet.
    backends.tune_host_allocator()
    configs = args.configs
    if not configs:
        p.error("--configs: give at least one hidden:batch pair")
    data = synthetic(args.n)
    torch_ok = [] if args.no_torch else torch_devices()
    if not torch_ok and not args.no_torch:
        log("note: torch is not importable here; the PyTorch rows are skipped")
    rows = make_rows(configs, data, torch_ok)

    log(f"timing {len(rows)} rows")
    time_rows(rows, args.repeats, args.pause)
    deep_rows = []
    if args.deep_batch:
        deep_rows = make_deep_rows(args.deep_batch, data, torch_ok)
        log(f"timing {len(deep_rows)} rows of the deep nets")
        time_rows(deep_rows, args.repeats, args.pause)
    conv_rows = []
    if args.conv_batch:
        conv_rows = make_conv_rows(args.conv_batch, synthetic_images(args.conv_n), torch_ok)
        log(f"timing {len(conv_rows)} rows of the convolutional nets")
        time_rows(conv_rows, args.repeats, args.pause)
    floors = {(d, h, b): gemm_floor(d, h, b, args.repeats)
              for h, b in configs for d in backends.available()}
    trainer_cost = {}
    for row in rows:
        # the Trainer against the bare loop with the same (eager) step
        if (row.kind, row.device) in (("xpnet-trainer", "numpy"), ("xpnet-eager", "cupy")):
            loop = next(r for r in rows if r.kind == "xpnet-loop" and r.device == row.device
                        and r.config == row.config)
            trainer_cost[(row.device,) + row.config] = paired_ratio(row, loop) - 1
    framework_cost = {}
    for row in rows:
        # what the layers (xpnet-loop) and the Trainer add to NumPy's own work
        if row.kind in ("xpnet-trainer", "xpnet-loop") and row.device == "numpy":
            bare = next(r for r in rows if r.kind == "numpy-bare" and r.config == row.config)
            framework_cost[(row.kind,) + row.config] = paired_ratio(row, bare) - 1
    log("measuring peak memory, one process per row")
    if args.memory_configs is not None:
        memory_configs = args.memory_configs
    else:  # a smoke run probes one size: each probe is a process importing every library
        memory_configs = configs[:1] if args.smoke else configs
    for row in rows:
        row.mem = memory_of(row, args.n) if row.config in memory_configs else None
    log("numerical gradient")
    grad_rows, grad_params = numerical_gradient_rows(args.grad_hidden, 3 if not args.smoke else 1)
    log("evaluation memory")
    eval_rows = evaluation_memory(data)
    log("the data check at the door")
    door = door_check_cost(data, rows, args.repeats)

    text = report(rows, floors, trainer_cost, framework_cost, grad_rows, grad_params, eval_rows, args,
                  deep_rows, conv_rows, door)
    print(text)
    if args.out:
        with atomic_open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
