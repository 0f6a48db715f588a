"""6.1.8: the update rules compared on a 5-layer net (book: ch06/optimizer_compare_mnist.py).

MultiLayerNet(784, [100, 100, 100, 100], 10), ReLU, He initialisation, the
same start for every optimizer; 2,000 steps of batch 128 drawn with
replacement, as the book. Prints the loss every 500 steps and writes the
smoothed loss curves (the book's Figure 6-9). Besides the book's SGD,
Momentum, AdaGrad and Adam, our Nesterov and RMSprop run too.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.arguments import positive  # noqa: E402
from scripts.training import exit_on_interrupt  # noqa: E402
from scripts.experiment import (  # noqa: E402
    batches_of, parser, print_loss_table, save, start, train_losses)

from framework.optimizers import OPTIMIZERS  # noqa: E402
from framework.util import smooth_curve  # noqa: E402  (the book's common/util.py)
from models import MultiLayerNet  # noqa: E402

# the book's learning rates (Adam's is its default)
RATES = {"SGD": 0.01, "Momentum": 0.01, "Nesterov": 0.01, "AdaGrad": 0.01, "RMSprop": 0.01,
         "Adam": 0.001}


def main(argv=None):
    p = parser(__doc__, "optimizer_compare.png")
    p.add_argument("--iters", type=positive, default=2000, help="steps (default: %(default)s)")
    p.add_argument("--batch-size", type=positive, default=128)
    args, backend, ((x_train, t_train), _), plt = start(p, argv)
    batches = batches_of(x_train, t_train, args.batch_size, backend)
    curves = {}
    for name, lr in RATES.items():
        network = MultiLayerNet(784, [100] * 4, 10, seed=args.seed)
        optimizer = OPTIMIZERS[name.lower()](lr=lr)
        curves[name] = train_losses(network, optimizer, batches, args.iters, args.seed)
    print_loss_table(curves, args.iters)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), smooth_curve(losses), label=name)
    ax.set(xlabel="iterations", ylabel="loss (smoothed)", ylim=(0, 1), yscale="linear",
           title=f"optimizers on a 5-layer net, {args.dataset}")
    ax.legend()
    save(fig, args.out)


if __name__ == "__main__":
    exit_on_interrupt(main)
