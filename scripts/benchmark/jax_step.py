"""xpnet on JAX: the step compiled by XLA against JAX eager, JAX's own step, xpnet's step on
another library and PyTorch's own, in one run, interleaved (issue 34).

    python -m scripts.benchmark.jax_step [--device cpu|gpu] [--rounds 5] [--out FILE]

For TwoLayerNet(784, 50, 10), SimpleConvNet and DeepConvNet at batch 100, on synthetic
MNIST-shaped data, the Trainer's step:

  jax jit            on JAX's arrays, graph="auto": the step traced once and compiled
                     (framework/jit_step.py), with the JAX wing's default convolution
                     (the standard's im2col on the CPU, XLA's own on GPUs and TPUs)
  jax jit, <conv>    the same with the other convolution (conv nets only): "XLA conv"
                     (lax.conv_general_dilated) on the CPU, "im2col" on a GPU
  jax eager          on JAX's arrays, graph=False: one dispatch per operation
                     (each operation one computation, backends/jax/ops.py)
  JAX's own          the same network written as a JAX user writes it (scripts/benchmark/
                     jax_nn.py: jax.grad, jax.jit, XLA's convolution): what XLA makes of
                     the step without xpnet, the floor for the compiled rows
  numpy | cupy       xpnet's step on NumPy (the host wing) where JAX runs on the CPU; on
                     CuPy (its CUDA-graph step) where JAX runs on a GPU and CuPy is there
  PyTorch nn         PyTorch's own step (an nn.Module, autograd, torch.optim.SGD) on the
                     CPU, or on CUDA where JAX runs on a GPU; where PyTorch is installed

The last two rows each run in a process of their own (harness.Apart), interleaved with
the JAX rows all the same: in JAX's process PyTorch's CPU step ran at less than half the
speed it has in a program of its own.

The tables name the networks as the other benchmarks do: 50 is TwoLayerNet(784, 50, 10),
simple SimpleConvNet, deep DeepConvNet. Ratios are medians of per-round ratios. JAX needs
JAX_ENABLE_X64=1 as the scripts run it (DeepConvNet's dropout keeps its generator in
uint64, as on NumPy, rather than in 32-bit words), and on a GPU
would take 75% of its memory up front: this module sets JAX_ENABLE_X64=1 and
XLA_PYTHON_CLIENT_PREALLOCATE=false where they are unset, so the other libraries' rows
share the card.
"""

import argparse
import importlib.util
import os
import sys

os.environ.setdefault("JAX_ENABLE_X64", "1")  # before JAX is imported: as the scripts run
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # a GPU shared with others

import numpy as np  # noqa: E402

import backends  # noqa: E402
from scripts.benchmark import harness, nets  # noqa: E402
from scripts.benchmark.variants import Row, TorchEager, XpnetTrainer  # noqa: E402
from scripts.arguments import check_output, non_negative_seconds, positive  # noqa: E402

NETS = (nets.two_layer(50), nets.SIMPLE, nets.DEEP_CONV)


class JaxJit(XpnetTrainer):
    """The Trainer on JAX's arrays (``device``), its step compiled."""

    kind = "jax jit"
    where = None
    xla_conv = None  # the wing's own choice; set for JaxOtherConv by main()

    def use_backend(self):
        return backends.use("jax", device=self.where)

    def timed(self):
        if self.xla_conv is None:
            return super().timed()
        ops = backends.ops_for(self.trainer.batches.x)
        before, ops.xla_conv = ops.xla_conv, self.xla_conv
        try:
            return super().timed()
        finally:
            ops.xla_conv = before


class JaxOtherConv(JaxJit):
    """The compiled step with the convolution the wing does not choose here."""

    kind = "jax jit, other conv"


class JaxEager(JaxJit):
    kind = "jax eager"
    graph = False


class JaxOwn(Row):
    """The network in pure JAX (:mod:`scripts.benchmark.jax_nn`), SGD, compiled by jax.jit
    with the parameters donated; the epoch's order drawn on the host, sent once a window."""

    kind = "JAX's own"

    def setup(self):
        import jax
        from scripts.benchmark import jax_nn
        with backends.using("jax", device=JaxJit.where) as backend:
            self.dev = backend.device
        model = self.net.torch(jax_nn)
        self.params = jax.device_put(model.init(np.random.default_rng(0)), self.dev)
        self.step = jax_nn.sgd_step(model, self.net.lr)
        x, t = self.data
        self.x = jax.device_put(x, self.dev)
        self.t = jax.device_put(t.astype(np.int32), self.dev)
        self.random = jax.device_put(jax.random.key(0), self.dev)
        self.rng = np.random.default_rng(0)
        self.jax = jax

    def sync(self):
        self.jax.block_until_ready(self.params)

    def window(self):
        order = self.jax.device_put(self.rng.permutation(self.x.shape[0]).astype(np.int32),
                                    self.dev)
        for i in range(self.steps):
            self.params, _ = self.step(self.params, self.x, self.t, order, i, self.random,
                                       batch=self.batch)


TORCH = "PyTorch nn"  # the table's name for PyTorch's own step (variants.TorchEager)


def ratio(rows, a, b):
    """How many times faster row ``a`` runs than row ``b`` (per-round median), or '-'."""
    if a not in rows or b not in rows:
        return "-"
    return f"{harness.paired_ratio(rows[b], rows[a]):.2f}x"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None,
                   help="JAX's device: cpu, gpu, cuda:N, tpu (default: JAX's default)")
    p.add_argument("--rounds", type=positive, default=5)
    p.add_argument("--pause", type=non_negative_seconds, default=0.2)
    p.add_argument("--n", type=positive, default=6000,
                   help="samples a two-layer window: an epoch of 60 steps, so that the "
                        "Trainer's once-an-epoch work (an evaluation, the compiled step's "
                        "sync) weighs a step as in an epoch of 600 steps, a tenth")
    p.add_argument("--conv-n", type=positive, default=600, help="images a conv window")
    p.add_argument("--no-eager-conv", action="store_true",
                   help="leave out JAX eager for the conv nets (slow: seconds a window)")
    p.add_argument("--nets", default=",".join(net.name for net in NETS),
                   help="the networks, by the tables' names (default: %(default)s)")
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args(argv)
    check_output(p, "--out", args.out)  # before the run, not after it
    known = {net.name: net for net in NETS}
    unknown = [name for name in args.nets.split(",") if name not in known]
    if unknown:
        p.error(f"--nets: no network named {', '.join(unknown)}; known: {', '.join(known)}")
    import jax
    with backends.using("jax", device=args.device) as backend:
        platform = backend.device.platform
        xla_default = backends.ops_for(backend.asarray(np.zeros(1))).xla_conv
    JaxJit.where = args.device
    JaxOtherConv.xla_conv = not xla_default
    other_conv = "XLA conv" if JaxOtherConv.xla_conv else "im2col"
    on_gpu = platform == "gpu"
    other = "cupy" if on_gpu and "cupy" in backends.available() else "numpy"
    other_kind = "cupy graph" if other == "cupy" else "numpy"
    have_torch = importlib.util.find_spec("torch") is not None
    if have_torch and on_gpu:
        have_torch = harness.torch_sees_cuda()  # asked apart: no PyTorch in JAX's process
    torch_device = "cupy" if on_gpu else "numpy"  # the rows' name for CUDA, the CPU
    columns = ("jax jit", JaxOtherConv.kind, "jax eager", JaxOwn.kind, other_kind, TORCH)
    lines = [f"# xpnet on JAX: the compiled step ({platform}: {backend.description})", "",
             f"JAX {jax.__version__}; {args.rounds} interleaved rounds; batch 100; float32; "
             f"SGD. ms a step; ratios are speed (how many times faster), per-round medians. "
             f"50: TwoLayerNet(784, 50, 10); simple: SimpleConvNet; deep: DeepConvNet. "
             f"jax jit: the wing's convolution ({'XLA' if xla_default else 'im2col'} "
             f"here); other conv: {other_conv}. PyTorch nn on "
             f"{'CUDA' if on_gpu else 'the CPU'}. The {other_kind} and PyTorch rows each "
             f"run in a process of their own, interleaved with the JAX rows.", "",
             "| network | " + " | ".join(columns) + " | jit vs eager | jit vs JAX's own | "
             f"jit vs {other_kind} | jit vs PyTorch |",
             "|---|" + "---:|" * (len(columns) + 4)]
    for net in (known[name] for name in args.nets.split(",")):
        n = args.conv_n if net.images else args.n
        data = harness.synthetic_images(n) if net.images else harness.synthetic(n)
        kinds = [JaxJit] + ([JaxOtherConv] if net.images else []) + \
            ([] if net.images and args.no_eager_conv else [JaxEager]) + [JaxOwn]
        rows = [cls(net, "jax", 100, data) for cls in kinds]
        # xpnet's other library and PyTorch each in a process of its own (harness.Apart)
        rows.append(harness.Apart(XpnetTrainer(net, other, 100, data), kind=other_kind))
        if have_torch:
            rows.append(harness.Apart(TorchEager(net, torch_device, 100, data), kind=TORCH))
        harness.log(f"{net.name}: {len(rows)} rows")
        harness.time_rows(rows, args.rounds, args.pause)
        by = {row.kind: row for row in rows}
        cells = [f"{by[k].ms:.3f}" if k in by else "-" for k in columns]
        lines.append(f"| {net.name} | " + " | ".join(cells) + " | "
                     f"{ratio(by, 'jax jit', 'jax eager')} | {ratio(by, 'jax jit', JaxOwn.kind)} | "
                     f"{ratio(by, 'jax jit', other_kind)} | "
                     f"{ratio(by, 'jax jit', TORCH)} |")
    harness.emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
