"""xpnet on PyTorch's tensors against PyTorch itself, in one run, interleaved (issue 33).

    python -m scripts.benchmark.torch_wing [--device cpu] [--rounds 7] [--out FILE]

For TwoLayerNet(784, 50, 10), SimpleConvNet and DeepConvNet at batch 100, on synthetic
MNIST-shaped data, three rows a network, their windows interleaved:

  xpnet, torch wing   the Trainer on PyTorch's tensors, the wing's operations
                      (backends/torch/ops.py: conv2d, convolution_backward, addmm, ...)
  xpnet, standard     the same Trainer on the standard's reference operations
                      (``fast_paths=False``): the path PyTorch's tensors took before the wing
  PyTorch nn          PyTorch's own step: an nn.Module's forward, autograd's backward,
                      torch.optim.SGD (scripts/benchmark/variants.py's torch-eager row)

and the tiny step (TwoLayerNet(4, 4, 3) at batch 2, where only the cost of each
operation counts): xpnet's step (``gradient`` then ``SGD.update``) on the wing and on
the standard path, against the same step written by hand in PyTorch, no autograd and no
framework (:class:`BareTorchTwoLayer`). Ratios are medians of the per-round ratios.
``--device cuda`` runs every row on the GPU (synchronised around each window).
"""

import argparse
import statistics
import sys
import time

import numpy as np

import backends
from scripts.benchmark import harness, nets
from scripts.benchmark.overhead import _rounds
from scripts.benchmark.variants import TorchEager, XpnetTrainer
from scripts.arguments import check_output, non_negative_seconds, positive

NETS = (nets.two_layer(50), nets.SIMPLE, nets.DEEP_CONV)


class WingRow(XpnetTrainer):
    """The Trainer on PyTorch's tensors on ``--device`` (``where``)."""

    kind = "xpnet, torch wing"
    where = "cpu"

    def use_backend(self):
        return backends.use("torch", device=self.where)


class StandardRow(WingRow):
    kind = "xpnet, standard"
    settings = {"fast_paths": False}


class TorchRow(TorchEager):
    kind = "PyTorch nn"


class BareTorchTwoLayer:
    """Affine - ReLU - Affine - softmax cross-entropy and SGD, by hand in PyTorch, in place."""

    def __init__(self, params, lr, device):
        import torch
        self.torch = torch
        self.W1, self.b1, self.W2, self.b2 = (
            torch.from_numpy(np.array(backends.to_numpy(params[k]))).to(device)
            for k in ("W1", "b1", "W2", "b2"))
        self.lr = lr

    def step(self, x, t):
        torch, F = self.torch, self.torch.nn.functional
        W1, b1, W2, b2, lr = self.W1, self.b1, self.W2, self.b2, self.lr
        n = x.shape[0]
        a = torch.addmm(b1, x, W1)
        keep = a > 0
        a.mul_(keep)
        s = torch.addmm(b2, a, W2)
        logp = torch.log_softmax(s, 1)
        loss = F.nll_loss(logp, t)
        e = logp.exp_()
        e[self.rows, t] -= 1
        e.mul_(1 / n)
        dW2 = a.T @ e
        db2 = e.sum(0)
        dh = e @ W2.T
        dh.mul_(keep)
        dW1 = x.T @ dh
        db1 = dh.sum(0)
        W1.sub_(dW1, alpha=lr)
        b1.sub_(db1, alpha=lr)
        W2.sub_(dW2, alpha=lr)
        b2.sub_(db2, alpha=lr)
        return loss


def tiny(device, rounds, steps=1000):
    """The tiny step: ``{row: microseconds}`` and the wing's and the standard's ratios to
    the hand-written step (medians of the per-round ratios)."""
    import torch
    from framework.optimizers import SGD
    from models import TwoLayerNet
    backend = backends.use("torch", device=device)
    rng = np.random.default_rng(1)
    x_host, t_host = rng.random((2, 4), dtype=np.float32), rng.integers(0, 3, 2)
    x, t = backend.asarray(x_host), backend.asarray(t_host)
    wing, standard = TwoLayerNet(4, 4, 3, seed=0), TwoLayerNet(4, 4, 3, seed=0)
    opt_wing, opt_standard = SGD(lr=0.01), SGD(lr=0.01)
    bare = BareTorchTwoLayer(wing.params, 0.01, backend.device)
    bare.rows = torch.arange(2, device=backend.device)

    def run_standard():
        with backends.configured(fast_paths=False):
            opt_standard.update(standard.params, standard.gradient(x, t))
    fns = [lambda: opt_wing.update(wing.params, wing.gradient(x, t)), run_standard,
           lambda: bare.step(x, t)]
    times = _rounds(fns, rounds, steps)
    wing_t, standard_t, bare_t = times
    return {"wing_us": 1e6 * statistics.median(wing_t),
            "standard_us": 1e6 * statistics.median(standard_t),
            "bare_us": 1e6 * statistics.median(bare_t),
            "wing_ratio": statistics.median(a / b for a, b in zip(wing_t, bare_t)),
            "standard_ratio": statistics.median(a / b for a, b in zip(standard_t, bare_t))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--rounds", type=positive, default=7)
    p.add_argument("--pause", type=non_negative_seconds, default=0.2)
    p.add_argument("--n", type=positive, default=1000, help="samples a two-layer window")
    p.add_argument("--conv-n", type=positive, default=600, help="images a conv window")
    p.add_argument("--out", help="also write the tables to this file")
    args = p.parse_args(argv)
    check_output(p, "--out", args.out)  # before the run, not after it
    import torch
    WingRow.where = args.device
    torch_key = "numpy" if args.device == "cpu" else "cupy"  # TorchEager's device names
    threads = torch.get_num_threads()
    lines = [f"# xpnet on PyTorch's tensors against PyTorch ({args.device})", "",
             f"PyTorch {torch.__version__}, {threads} threads; {args.rounds} interleaved "
             f"rounds; batch 100; float32; SGD.", "",
             "| network | xpnet, torch wing ms | xpnet, standard ms | PyTorch nn ms | "
             "wing vs PyTorch (speed) | standard vs PyTorch (speed) | wing vs standard |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for net in NETS:
        n = args.conv_n if net.images else args.n
        data = harness.synthetic_images(n) if net.images else harness.synthetic(n)
        rows = [WingRow(net, "torch", 100, data), StandardRow(net, "torch", 100, data),
                TorchRow(net, torch_key, 100, data)]
        harness.log(f"{net.name}: {len(rows)} rows")
        harness.time_rows(rows, args.rounds, args.pause)
        wing, standard, ref = rows
        lines.append(f"| {net.name} | {wing.ms:.3f} | {standard.ms:.3f} | {ref.ms:.3f} | "
                     f"{harness.paired_ratio(ref, wing):.2f}x | "
                     f"{harness.paired_ratio(ref, standard):.2f}x | "
                     f"{harness.paired_ratio(standard, wing):.2f}x |")
    harness.log("tiny step")
    small = tiny(args.device, max(args.rounds * 2, 9))
    lines += ["", "The tiny step, TwoLayerNet(4, 4, 3) at batch 2: microseconds a step, and "
              "its time against the same step written by hand in PyTorch.", "",
              "| step | us | vs hand-written PyTorch (time) |", "|---|---:|---:|",
              f"| xpnet, torch wing | {small['wing_us']:.1f} | {small['wing_ratio']:.2f}x |",
              f"| xpnet, standard | {small['standard_us']:.1f} | "
              f"{small['standard_ratio']:.2f}x |",
              f"| hand-written PyTorch | {small['bare_us']:.1f} | 1.00x |"]
    harness.emit(lines, args.out)
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    harness.log(f"{time.perf_counter() - t0:.0f} s")
    sys.exit(code)
