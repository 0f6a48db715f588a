"""6.3.2: training with and without Batch Normalization across initial weight scales
(book: ch06/batch_norm_test.py, Figure 6-19).

For each of 16 initial weight scales from 1 down to 1e-4 (log-spaced), trains
MultiLayerNetExtend(784, [100] * 5, 10) with and without batch norm on the
first 1,000 training samples, 20 epochs of SGD (lr 0.01, batch 100, batches
drawn with replacement as the book), on the same batches, and records the
training accuracy after each epoch. Prints the last epoch's accuracies and
writes the 4 x 4 grid of curves.
"""

import math
import os
import sys

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.arguments import positive  # noqa: E402
from scripts.training import exit_on_interrupt  # noqa: E402
from scripts.experiment import first_samples, parser, save, start  # noqa: E402

from framework.optimizers import SGD  # noqa: E402
from framework.trainer import Trainer  # noqa: E402
from models import MultiLayerNetExtend  # noqa: E402


def train_accuracy(x, t, scale, batchnorm, epochs, seed):
    """Training accuracy per epoch, and whether the loss overflowed (large scales
    without batch norm do: the book's curves then sit at chance)."""
    network = MultiLayerNetExtend(784, [100] * 5, 10, weight_init_std=scale,
                                  use_batchnorm=batchnorm, seed=seed)
    trainer = Trainer(network, x, t, x, t, epochs=epochs, mini_batch_size=100,
                      optimizer=SGD(lr=0.01), sampling="choice", seed=seed, verbose=False)
    with numpy.errstate(over="ignore", invalid="ignore"):
        try:
            trainer.train()
        except FloatingPointError:
            return trainer.train_acc_list, True
    return trainer.train_acc_list, False


def main(argv=None):
    p = parser(__doc__, "batch_norm_test.png")
    p.add_argument("--epochs", type=positive, default=20, help="epochs (default: %(default)s)")
    p.add_argument("--scales", type=positive, default=16,
                   help="how many weight scales, log-spaced from 1 to 1e-4 (default: 16)")
    p.add_argument("--train-size", type=positive,
                   help="the first samples to use (default: 1000, or all where fewer)")
    args, backend, ((x_train, t_train), _), plt = start(p, argv)
    # two samples at least: batch norm cannot normalise a batch of one
    x, t = first_samples(p, x_train, t_train, args.train_size, 1000, least=2)
    scales = numpy.logspace(0, -4, num=args.scales).tolist()
    cols = math.ceil(math.sqrt(len(scales)))
    rows = math.ceil(len(scales) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False,
                             sharex=True, sharey=True)
    print(f"final training accuracy after {args.epochs} epochs")
    print(f"  {'weight scale':>12}  {'batch norm':>10}  {'without':>8}")
    for ax, scale in zip(axes.flat, scales):
        results = [train_accuracy(x, t, scale, bn, args.epochs, args.seed) for bn in (True, False)]
        cells = [f"{acc[-1]:.4f}" if acc and not bad else
                 f"overflow, epoch {len(acc) + 1}" for acc, bad in results]
        print(f"  {scale:12.3g}  {cells[0]:>10}  {cells[1]:>8}")
        for (acc, bad), label, style in zip(results, ("batch normalization", "normal (without BN)"),
                                            ("-", "--")):
            line, = ax.plot(range(1, len(acc) + 1), acc, linestyle=style, label=label)
            if bad:  # where the loss overflowed: the run stopped there
                ax.plot([len(acc) + 1], [0.1], "x", color=line.get_color())
        ax.set_title(f"W std = {scale:.3g}", fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes[-1]:
        ax.set_xlabel("epochs")
    for ax in axes[:, 0]:
        ax.set_ylabel("training accuracy")
    for ax in axes.flat[len(scales):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    axes.flat[0].set_xlim(0, args.epochs + 1)
    fig.suptitle(f"with and without batch normalization, {args.dataset}, "
                 f"{x.shape[0]} samples")
    fig.tight_layout()
    save(fig, args.out)


if __name__ == "__main__":
    exit_on_interrupt(main)
