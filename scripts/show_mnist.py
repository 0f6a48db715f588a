"""Save a PNG grid of the first training images with their labels (cf. the book's ch03/mnist_show.py)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from framework.datasets import DatasetError, load_dataset  # noqa: E402
from scripts.arguments import check_figure  # noqa: E402
from scripts.training import save_figure  # noqa: E402

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


MOST = 256  # 32 rows of 8: a grid taller than that is no longer a picture


def image_count(text):
    """``--count``'s type: an integer from 1 to :data:`MOST`."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MOST:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MOST}, got {text!r}")
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--count", type=image_count, default=32,
                        help=f"images to show, 1 to {MOST} (default: %(default)s)")
    parser.add_argument("--out", default="mnist.png", help="figure to write; its suffix picks the format "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    check_figure(parser, "--out", args.out)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        parser.exit(1, "error: matplotlib is needed: pip install 'xpnet[plot]'\n")
    try:
        (x, t), _ = load_dataset(args.dataset, normalize=False, flatten=False)
    except DatasetError as e:
        parser.exit(1, f"error: {e}\n")
    n = min(args.count, x.shape[0])
    cols = 8
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i, 0], cmap="gray")
            label = int(t[i])
            name = FASHION_CLASSES[label] if args.dataset == "fashion-mnist" else str(label)
            ax.set_title(name, fontsize=8)
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}: first {n} {args.dataset} training images")


if __name__ == "__main__":
    main()
