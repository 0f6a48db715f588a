"""7.6.1: the first layer's filters before and after training (book: ch07/visualize_filter.py,
Figure 7-24).

Draws the filters of SimpleConvNet's first convolution as gray images: the
random ones of a new network (``--seed``), and the trained ones from a
checkpoint written by ``train_convnet.py --save PATH`` (``--params PATH``).
Without ``--params``, trains the chapter-7 net for ``--epochs`` (default 1)
first. Writes one PNG, the "before" row above the "after" row.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backends  # noqa: E402
from framework.checkpoint import CheckpointError  # noqa: E402
from framework.datasets import DatasetError, load_dataset  # noqa: E402
from framework.trainer import Trainer  # noqa: E402
from models import SimpleConvNet  # noqa: E402
from scripts.arguments import check_figure, non_negative_seed, positive_number  # noqa: E402
from scripts.training import exit_on_interrupt, save_figure  # noqa: E402


def filters_of(network):
    """The first convolution's filters on the host, ``(FN, C, FH, FW)``."""
    return backends.to_numpy(network.params["W1"])


def draw(rows, path, labels):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    count = rows[0].shape[0]
    cols = min(count, 15)
    per_row = -(-count // cols)
    fig, axes = plt.subplots(len(rows) * per_row, cols, squeeze=False,
                             figsize=(cols * 0.7, len(rows) * per_row * 0.8 + 0.4))
    for r, (filters, label) in enumerate(zip(rows, labels)):
        for i in range(per_row * cols):
            ax = axes[r * per_row + i // cols, i % cols]
            ax.set_xticks([])
            ax.set_yticks([])
            if i < count:
                ax.imshow(filters[i, 0], cmap="gray_r", interpolation="nearest")
            else:
                ax.axis("off")
        axes[r * per_row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("first-layer filters (darker = larger weight)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", metavar="PATH", help="a trained SimpleConvNet checkpoint, or the "
                                                    "book's own ch07/params.pkl")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--backend", choices=backends.CHOICES, help="overrides XPNET_BACKEND")
    p.add_argument("--device", help="the backend's device (cpu, cuda:1, mps, device1); overrides "
                                    "XPNET_DEVICE")
    p.add_argument("--epochs", type=positive_number, default=1,
                   help="without --params: epochs to train first (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_seed, default=0)
    p.add_argument("--out", default="filters.png", metavar="PNG",
                   help="figure to write; its suffix picks the format (default: %(default)s)")
    args = p.parse_args(argv)
    check_figure(p, "--out", args.out)
    try:
        backend = backends.chosen(args.backend, args.device)
    except (ValueError, RuntimeError) as e:
        p.exit(2, f"error: {e}\n")
    trained = SimpleConvNet(seed=args.seed)
    before = filters_of(trained).copy()
    if args.params:
        try:
            trained.load_params(args.params)
        except CheckpointError as e:
            p.exit(1, f"error: {e}\n")
        source = args.params
    else:
        try:
            (x_train, t_train), (x_test, t_test) = load_dataset(args.dataset, flatten=False)
        except DatasetError as e:
            p.exit(1, f"error: {e}\n")
        # the book's chapter-7 run, shortened
        try:
            Trainer(trained, x_train, t_train, x_test, t_test, epochs=args.epochs,
                    mini_batch_size=100, optimizer="Adam", optimizer_param={"lr": 0.001},
                    evaluate_sample_num_per_epoch=1000, seed=args.seed, verbose=False).train()
        except (ValueError, FloatingPointError) as e:
            p.exit(2, f"error: {e}\n")
        source = f"{args.epochs:g} epoch(s) of {args.dataset} on {backend.name}"
    after = filters_of(trained)
    draw([before, after], args.out, ["before", "after"])
    change = float(abs(after - before).mean()) / float(abs(before).mean())
    print(f"filters: {before.shape[0]} of {before.shape[2]}x{before.shape[3]}; trained from "
          f"{source}; mean |change| / mean |initial| = {change:.2f}")
    print(f"figure: {args.out}")


if __name__ == "__main__":
    exit_on_interrupt(main)
