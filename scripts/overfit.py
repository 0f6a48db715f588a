"""6.4: overfitting, and weight decay and dropout against it (book: ch06/overfit_weight_decay.py,
overfit_dropout.py; Figures 6-20, 6-21, 6-23).

Trains a 7-layer net, MultiLayerNet(784, [100] * 6, 10), on only the first 300
training samples with SGD (lr 0.01, batch 100, batches drawn with replacement)
and records training and test accuracy after every epoch: the gap between
them is the overfitting. ``--weight-decay 0.1`` adds the L2 penalty,
``--dropout 0.2`` puts dropout after every hidden layer (MultiLayerNetExtend);
the book runs 201 epochs without dropout and 301 with it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.arguments import non_negative_number, positive, ratio  # noqa: E402
from scripts.training import exit_on_interrupt  # noqa: E402
from scripts.experiment import first_samples, parser, save, start  # noqa: E402

from framework.optimizers import SGD  # noqa: E402
from framework.trainer import Trainer  # noqa: E402
from models import MultiLayerNet, MultiLayerNetExtend  # noqa: E402


def main(argv=None):
    p = parser(__doc__, "overfit.png")
    p.add_argument("--weight-decay", type=non_negative_number, default=0, metavar="LAMBDA",
                   help="L2 weight decay (the book's example: 0.1)")
    p.add_argument("--dropout", type=ratio, metavar="RATIO",
                   help="dropout ratio after each hidden layer (the book's example: 0.2)")
    p.add_argument("--epochs", type=positive, help="epochs (default: 201, or 301 with --dropout)")
    p.add_argument("--train-size", type=positive,
                   help="the first samples to use (default: 300, or all where fewer)")
    args, backend, ((x_train, t_train), (x_test, t_test)), plt = start(p, argv)
    epochs = args.epochs or (301 if args.dropout is not None else 201)
    try:
        if args.dropout is not None:
            network = MultiLayerNetExtend(784, [100] * 6, 10, use_dropout=True,
                                          dropout_ration=args.dropout,
                                          weight_decay_lambda=args.weight_decay, seed=args.seed)
        else:
            network = MultiLayerNet(784, [100] * 6, 10, weight_decay_lambda=args.weight_decay,
                                    seed=args.seed)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    x, t = first_samples(p, x_train, t_train, args.train_size, 300)
    trainer = Trainer(network, x, t, x_test, t_test, epochs=epochs, mini_batch_size=100,
                      optimizer=SGD(lr=0.01), sampling="choice", seed=args.seed, verbose=False)
    trainer.train()
    train, test = trainer.train_acc_list, trainer.test_acc_list
    what = ", ".join(filter(None, [
        f"weight decay {args.weight_decay:g}" if args.weight_decay else "",
        f"dropout {args.dropout:g}" if args.dropout is not None else ""])) or "no regularisation"
    print(f"{what}: {x.shape[0]} training samples, {epochs} epochs")
    for epoch in sorted({1, epochs // 4, epochs // 2, 3 * epochs // 4, epochs} - {0}):
        print(f"  epoch {epoch:>4}: train acc {train[epoch - 1]:.4f}, test acc "
              f"{test[epoch - 1]:.4f}, gap {train[epoch - 1] - test[epoch - 1]:+.4f}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(range(1, epochs + 1), train, marker="o", markevery=10, markersize=4, label="train")
    ax.plot(range(1, epochs + 1), test, marker="s", markevery=10, markersize=4, label="test")
    ax.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.0),
           title=f"7-layer net on {x.shape[0]} samples of {args.dataset}: {what}")
    ax.legend(loc="lower right")
    save(fig, args.out)


if __name__ == "__main__":
    exit_on_interrupt(main)
