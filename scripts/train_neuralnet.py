"""5.7.4: train TwoLayerNet with backprop (book: ch05/train_neuralnet.py), or a deeper net.

By default the book's run: TwoLayerNet(784, 50, 10), 10,000 steps of batch
100, SGD with lr 0.1, train and test accuracy once per epoch. ``--model
multi-layer`` trains chapter 6's MultiLayerNet instead (MultiLayerNetExtend
with --batchnorm or --dropout), e.g.

  train_neuralnet.py --model multi-layer --hidden 100,100,100 --batchnorm \\
      --dropout 0.2 --weight-decay 0.001 --optimizer adam --lr 0.001

Runs on the backend XPNET_BACKEND picks (or --backend). The last line
printed is ``final test acc: 0.xxxx``.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.arguments import non_negative_number, ratio  # noqa: E402
from scripts.training import check_args, exit_on_interrupt, parser, run  # noqa: E402

from models import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet  # noqa: E402


def size_list(text):
    """``"100,100"`` -> ``[100, 100]``; ``""`` -> ``[]``, no hidden layer (argparse type; sizes
    checked by the model). An empty place between commas (``100,,100``) is refused: it
    could have meant a third layer."""
    if not text.strip():
        return []
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer sizes separated by commas, such as "
                                         f"100,100,100; got {text!r}") from None


def init_value(text):
    """A number, or a name the models know ('relu', 'he', 'sigmoid', 'xavier')."""
    try:
        return float(text)
    except ValueError:
        return text


def parse_args(argv=None):
    p = parser(__doc__, iters=10000, lr=0.1, optimizer="sgd")
    p.add_argument("--model", default="two-layer", choices=["two-layer", "multi-layer"],
                   help="TwoLayerNet (chapter 5, the default) or MultiLayerNet (chapter 6)")
    p.add_argument("--hidden", type=size_list, default=None,
                   help="hidden layer sizes, comma-separated (default: 50 for two-layer, "
                        "100,100,100 for multi-layer)")
    p.add_argument("--activation", default="relu", choices=["relu", "sigmoid"],
                   help="multi-layer: hidden activation (default: %(default)s)")
    p.add_argument("--init", type=init_value, default=None,
                   help="initial weight std: a number, or relu/he/sigmoid/xavier for "
                        "multi-layer (default: 0.01 two-layer, relu multi-layer)")
    p.add_argument("--batchnorm", action="store_true", help="multi-layer: batch normalization")
    p.add_argument("--dropout", type=ratio, metavar="RATIO",
                   help="multi-layer: dropout with this ratio")
    p.add_argument("--weight-decay", type=non_negative_number, default=0, metavar="LAMBDA",
                   help="multi-layer: L2 weight decay lambda (default: 0)")
    args = p.parse_args(argv)
    check_args(p, args)
    if args.model == "two-layer":
        extras = [flag for flag, used in (("--batchnorm", args.batchnorm),
                                          ("--dropout", args.dropout is not None),
                                          ("--weight-decay", args.weight_decay),
                                          ("--activation", args.activation != "relu")) if used]
        if extras:
            p.error(f"{', '.join(extras)}: only with --model multi-layer")
        if args.hidden is not None and len(args.hidden) != 1:
            p.error(f"--model two-layer has one hidden layer; got --hidden "
                    f"{','.join(map(str, args.hidden))} (use --model multi-layer)")
        if isinstance(args.init, str):
            p.error(f"--init {args.init} needs --model multi-layer; two-layer takes a number")
    return p, args


def build_network(args, x_train):
    """The network the options describe (ValueError for sizes or names it refuses)."""
    input_size = x_train.shape[1]
    if args.model == "two-layer":
        hidden = args.hidden[0] if args.hidden else 50
        return TwoLayerNet(input_size, hidden, 10, 0.01 if args.init is None else args.init,
                           seed=args.seed)
    options = dict(activation=args.activation,
                   weight_init_std="relu" if args.init is None else args.init,
                   weight_decay_lambda=args.weight_decay, seed=args.seed)
    hidden = [100, 100, 100] if args.hidden is None else args.hidden
    if args.batchnorm or args.dropout is not None:
        return MultiLayerNetExtend(input_size, hidden, 10, use_batchnorm=args.batchnorm,
                                   use_dropout=args.dropout is not None,
                                   dropout_ration=0.5 if args.dropout is None else args.dropout,
                                   **options)
    return MultiLayerNet(input_size, hidden, 10, **options)


def main(argv=None):
    p, args = parse_args(argv)
    run(p, args, build_network)


if __name__ == "__main__":
    exit_on_interrupt(main)
