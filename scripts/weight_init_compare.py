"""6.2: initial weight scales compared (book: ch06/weight_init_compare.py and
weight_init_activation_histogram.py).

Trains MultiLayerNet(784, [100, 100, 100, 100], 10) with ReLU from
``std=0.01``, Xavier and He initial weights, 2,000 steps of SGD (lr 0.01,
batch 128), prints the loss every 500 steps and writes the smoothed loss
curves (Figure 6-15). ``--histograms`` also writes, beside ``--out``, the
activation histograms of a 5-layer, 100-unit net fed 1,000 random inputs
(Figures 6-10 to 6-14): sigmoid with std 1, std 0.01 and Xavier, and ReLU
with std 0.01, Xavier and He.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.arguments import positive  # noqa: E402
from scripts.training import exit_on_interrupt  # noqa: E402
from scripts.experiment import (  # noqa: E402
    batches_of, parser, print_loss_table, save, start, train_losses)

import backends  # noqa: E402
from framework.optimizers import SGD  # noqa: E402
from framework.util import smooth_curve  # noqa: E402  (the book's common/util.py)
from models import MultiLayerNet  # noqa: E402

INITS = {"std=0.01": 0.01, "Xavier": "xavier", "He": "he"}
HISTOGRAMS = [("sigmoid", 1.0, "std=1"), ("sigmoid", 0.01, "std=0.01"),
              ("sigmoid", "xavier", "Xavier"), ("relu", 0.01, "std=0.01"),
              ("relu", "xavier", "Xavier"), ("relu", "he", "He")]


def activations(activation, init, seed, layers=5, nodes=100, n=1000):
    """Each hidden layer's output for N(0, 1) inputs, on the current backend (host copies)."""
    net = MultiLayerNet(nodes, [nodes] * layers, nodes, activation=activation,
                        weight_init_std=init, seed=seed)
    x = backends.to_device(backends.host_rng(seed + 1).standard_normal((n, nodes)), "float32")
    outs = []
    for name, layer in net.layers.items():
        x = layer.forward(x)
        if name.startswith("Activation_function"):
            outs.append(backends.to_numpy(x).ravel())
    return outs


def histograms(args, plt):
    rows = len(HISTOGRAMS)
    fig, axes = plt.subplots(rows, 5, figsize=(12, 2.0 * rows), sharey="row")
    for r, (activation, init, label) in enumerate(HISTOGRAMS):
        outs = activations(activation, init, args.seed)
        for i, values in enumerate(outs):
            ax = axes[r, i]
            upper = 1.0 if activation == "sigmoid" else max(float(values.max()), 1e-3)
            ax.hist(values, 30, range=(0, upper))
            ax.set_title(f"{activation}, {label}: layer {i + 1}", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == rows - 1:
                ax.set_xlabel("activation", fontsize=8)
            if i == 0:
                ax.set_ylabel("count", fontsize=8)
        spreads = ", ".join(f"{float(v.std()):.3f}" for v in outs)
        print(f"histogram {activation:<7} {label:<8}: std of each layer's outputs {spreads}")
    fig.tight_layout()
    stem, ext = os.path.splitext(args.out)
    save(fig, f"{stem}-histograms{ext or '.png'}")


def main(argv=None):
    p = parser(__doc__, "weight_init_compare.png")
    p.add_argument("--iters", type=positive, default=2000, help="steps (default: %(default)s)")
    p.add_argument("--batch-size", type=positive, default=128)
    p.add_argument("--histograms", action="store_true",
                   help="also write the activation histograms, to OUT-histograms.png")
    args, backend, ((x_train, t_train), _), plt = start(p, argv)
    batches = batches_of(x_train, t_train, args.batch_size, backend)
    curves = {}
    for label, init in INITS.items():
        network = MultiLayerNet(784, [100] * 4, 10, weight_init_std=init, seed=args.seed)
        curves[label] = train_losses(network, SGD(lr=0.01), batches, args.iters,
                                     args.seed)
    print_loss_table(curves, args.iters)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), smooth_curve(losses), label=label)
    ax.set(xlabel="iterations", ylabel="loss (smoothed)", ylim=(0, 2.5),
           title=f"initial weights, 5-layer ReLU net, {args.dataset}")
    ax.legend()
    save(fig, args.out)
    if args.histograms:
        histograms(args, plt)


if __name__ == "__main__":
    exit_on_interrupt(main)
