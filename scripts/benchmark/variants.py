"""The benchmark's rows: one variant of one network on one device at one batch size.

  xpnet-trainer  the Trainer, progress bar on, on every available backend (on CuPy it
                 replays each step as a CUDA graph where it can: the step column says)
  xpnet-eager    CuPy only: the Trainer with graph=False (fused kernels, eager launches)
  xpnet-unfused  CuPy only: graph=False and the fused kernels off (plain CuPy operations,
                 the obvious implementation)
  xpnet-im2col   NumPy, convolutional nets only: the Trainer without the compiled kernels
                 (im2col + BLAS, as where no C compiler is found)
  xpnet-standard NumPy and PyTorch: the Trainer on the standard's reference operations
                 (what each wing's fast paths gain)
  xpnet-loop     the same layers in a bare eager loop (what the Trainer adds is the difference)
  numpy-bare     the same step as one hand-written NumPy function, no framework
                 (scripts/benchmark/bare.py): what NumPy alone does, the layers' floor
  book-loop      the book's train_neuralnet.py loop in NumPy (scripts/benchmark/book.py):
                 one-hot labels, np.random.choice batches, loss recomputed after the update
  torch-eager    PyTorch eager on the same device, when torch imports; on a GPU in full
                 float32 as xpnet (TF32 off: cuDNN's convolutions default to it)

``setup()`` once, then ``window()`` runs ``steps`` steps; :func:`rows_for` makes a
network's rows for the devices there are.
"""

import contextlib
import io
import os
import time

import numpy as np

import backends
from framework.data import DeviceBatches
from framework.optimizers import SGD
from framework.trainer import Trainer
from scripts.benchmark import book


class Row:
    kind = ""
    devices = ("numpy",)  # where this variant runs: "numpy", "cupy", or "all"

    def __init__(self, net, device, batch, data):
        self.net, self.device, self.batch, self.data = net, device, batch, data
        self.steps = max(data[0].shape[0] // batch, 1)
        self.times = []
        self.mem = None

    @property
    def hidden(self):  # the net's label, as the tables print it
        return self.net.name

    @property
    def key(self):
        return f"{self.kind}:{self.device}:{self.batch}:{self.net.name}"

    @property
    def config(self):
        return (self.net.name, self.batch)

    def sync(self):
        pass

    def timed(self):
        self.sync()
        start = time.perf_counter()
        self.window()
        self.sync()
        return time.perf_counter() - start

    def gpu_bytes(self):
        return None

    def close(self):
        """Let go of what :meth:`setup` started (another process, for a row timed apart)."""


class XpnetRow(Row):
    devices = "all"
    #: the settings a window runs under (backends.configured): the fused kernels, the
    #: compiled ones, the fast paths, switched off by the rows that measure them
    settings = {}

    def setup(self):
        self.backend = self.use_backend()
        self.network = self.net.xpnet()

    def use_backend(self):
        """Make the row's backend the default and return it (a row of a library's own
        benchmark picks the library and device itself)."""
        return backends.use(self.device)

    def sync(self):
        self.backend.synchronize()

    def timed(self):
        with backends.configured(**self.settings):
            return super().timed()


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
        # Each window is an epoch, whose report evaluates accuracy (train and test, and
        # final_test_acc after train): on one sample, so the report's code stays in the
        # window but not its arithmetic. A real epoch spreads its evaluation over 600
        # steps; a 6-step window of DeepConvNet spread three 100-sample predictions over
        # 6 and charged xpnet's row some 21 ms a step that PyTorch's row never paid.
        self.trainer = Trainer(self.network, x, t, x[:1], t[:1], epochs=1,
                               mini_batch_size=self.batch, optimizer="SGD",
                               optimizer_param={"lr": self.net.lr},
                               evaluate_sample_num_per_epoch=1, verbose=True, seed=0,
                               graph=self.graph)
        self.steps = self.trainer.iter_per_epoch

    def window(self):
        # the bar and epoch lines are drawn in full, just not onto the table: the bar into
        # a terminal no one sees (the Trainer draws none into a file)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(UnseenTerminal()), \
                contextlib.redirect_stdout(devnull):
            self.trainer.train(epochs=1)


class UnseenTerminal(io.TextIOBase):
    """A terminal whose text goes nowhere: where stderr is one, the Trainer draws its
    progress bar (and reads the loss for it), as on a user's screen."""

    def isatty(self):
        return True

    def write(self, text):
        return len(text)


class XpnetEager(XpnetTrainer):
    kind = "xpnet-eager"
    devices = ("cupy",)
    graph = False


class XpnetUnfused(XpnetEager):
    """The eager step on plain CuPy operations: what the fused and conv kernels gain."""
    kind = "xpnet-unfused"
    settings = {"fused": False}


class XpnetStandard(XpnetTrainer):
    """The Trainer with NumPy's or PyTorch's arrays on the standard's operations
    (backends/ops/), as array-api-strict's run: what the NumPy wing's and the torch wing's
    fast paths gain."""
    kind = "xpnet-standard"
    devices = ("numpy", "torch")
    settings = {"fast_paths": False}


class XpnetIm2col(XpnetTrainer):
    """The Trainer with the compiled kernels off (im2col, BLAS and col2im, as where no C
    compiler is found): what backends/host's kernels gain."""
    kind = "xpnet-im2col"
    devices = ("numpy",)
    settings = {"host_kernels": False}


class XpnetLoop(XpnetRow):
    kind = "xpnet-loop"
    step = "eager"

    def setup(self):
        super().setup()
        self.batches = DeviceBatches(*self.data, self.batch, seed=0, backend=self.backend)
        self.optimizer = SGD(lr=self.net.lr)
        self.steps = len(self.batches)

    def window(self):
        network, optimizer = self.network, self.optimizer
        for x, t in self.batches:
            optimizer.update(network.params, network.gradient(x, t))


class NumpyBare(Row):
    """The step with nothing around it: the measure of what the layers and the Trainer cost."""
    kind = "numpy-bare"

    def setup(self):
        self.bare = self.net.bare(self.net, self.batch, self.data, self.steps)

    def window(self):
        self.bare.window()


class BookLoop(Row):
    kind = "book-loop"

    def setup(self):
        x, t = self.data
        self.x, self.t = x, np.eye(10, dtype=np.float32)[t]  # one-hot, as the book loads it
        self.network = self.net.book()
        np.random.seed(0)

    def window(self):
        book.train_steps(self.network, self.x, self.t, self.steps, self.batch, self.net.lr)


class TorchEager(Row):
    kind = "torch-eager"
    devices = "torch"

    def setup(self):
        import torch
        self.torch = torch
        self.dev = torch.device("cpu" if self.device == "numpy" else "cuda")
        # float32 as xpnet computes it: cuDNN's convolutions would otherwise run in TF32
        # (10-bit mantissas) on an H100 by default
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.manual_seed(0)
        self.model = self.net.torch(torch.nn).to(self.dev)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.net.lr)
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


VARIANTS = {cls.kind: cls for cls in (XpnetTrainer, XpnetEager, XpnetUnfused, XpnetStandard,
                                      XpnetIm2col, XpnetLoop, NumpyBare, BookLoop, TorchEager)}
# Backends the benchmark times xpnet on: array-api-strict proves portability, not speed.
TIMED_BACKENDS = ("numpy", "cupy", "torch")


def same_device(device):
    """Where PyTorch's own rows ran for an xpnet row on ``device``: a torch backend row
    ('torch') ran on PyTorch's default device, CUDA where it has one, else the CPU."""
    if device != "torch":
        return device
    import torch
    return "cupy" if torch.cuda.is_available() else "numpy"


def torch_devices():
    """Devices PyTorch can run here, named as our backends ('numpy' meaning the CPU)."""
    try:
        import torch
    except Exception:
        return []
    return ["numpy"] + (["cupy"] if torch.cuda.is_available() else [])


def runs_on(kind, device, torch_ok):
    devices = VARIANTS[kind].devices
    if devices == "torch":
        return device in torch_ok
    if kind == "xpnet-im2col" and \
            backends.backend_class("numpy").kernels(backends.settings())[0] is None:
        return False  # no compiled kernels to switch off
    return devices == "all" or device in devices


def rows_for(net, batch, data, torch_ok):
    """The rows of ``net``: xpnet's variants on each backend there is, then the NumPy
    references, then PyTorch on each device it has."""
    rows = []
    for device in [b for b in backends.available() if b in TIMED_BACKENDS]:
        rows += [VARIANTS[kind](net, device, batch, data) for kind in net.variants
                 if kind.startswith("xpnet") and runs_on(kind, device, torch_ok)]
    rows += [VARIANTS[kind](net, "numpy", batch, data) for kind in net.variants
             if kind in ("numpy-bare", "book-loop")]
    rows += [TorchEager(net, device, batch, data) for device in torch_ok
             if "torch-eager" in net.variants]
    return rows
