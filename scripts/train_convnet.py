"""7.5 and 8.1: train the convolutional networks (book: ch07/train_convnet.py, ch08/train_deepnet.py).

By default the book's chapter-7 run: SimpleConvNet (30 filters of 5x5,
100 hidden units, weight std 0.01) for 20 epochs of batch 100, Adam with lr
0.001, train and test accuracy measured on 1,000 samples each epoch.
``--model deep`` trains chapter 8's DeepConvNet the same way (the book's
train_deepnet.py). Runs on the backend XPNET_BACKEND picks (or --backend).
The last line printed is ``final test acc: 0.xxxx``, measured on the
whole test set.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.training import check_args, exit_on_interrupt, parser, run  # noqa: E402

from models import DeepConvNet, SimpleConvNet  # noqa: E402


def parse_args(argv=None):
    p = parser(__doc__, epochs=20, lr=0.001, optimizer="adam")
    p.add_argument("--model", default="simple", choices=["simple", "deep"],
                   help="SimpleConvNet (chapter 7, the default) or DeepConvNet (chapter 8)")
    p.add_argument("--evaluate", type=int, default=1000, metavar="N",
                   help="samples each epoch's accuracies are measured on (default: 1000, the "
                        "book's evaluate_sample_num_per_epoch; 0 for all)")
    args = p.parse_args(argv)
    check_args(p, args)
    if args.evaluate < 0:
        p.error(f"--evaluate must be 0 (all) or more, got {args.evaluate}")
    return p, args


def build_network(args, x_train):
    input_dim = tuple(x_train.shape[1:])
    if args.model == "deep":
        return DeepConvNet(input_dim=input_dim, seed=args.seed)
    return SimpleConvNet(input_dim=input_dim, seed=args.seed)


def main(argv=None):
    p, args = parse_args(argv)
    run(p, args, build_network, flatten=False,
        evaluate_sample_num_per_epoch=args.evaluate or None)


if __name__ == "__main__":
    exit_on_interrupt(main)
