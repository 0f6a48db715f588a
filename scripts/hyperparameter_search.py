"""6.5.3: random search for the learning rate and weight decay on a validation split
(book: ch06/hyperparameter_optimization.py, Figure 6-25).

Takes the first 500 training samples, shuffles them (seeded) and holds 20%
out for validation: the test set is never looked at. Each trial draws
lr = 10^U(-6, -2) and weight decay = 10^U(-8, -4), trains
MultiLayerNet(784, [100] * 6, 10) for 50 epochs of SGD (batch 100) and
records the validation accuracy. Prints every trial, then the best ones,
and writes the validation (solid) and training (dashed) curves of the best.
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.arguments import positive  # noqa: E402
from scripts.training import exit_on_interrupt  # noqa: E402
from scripts.experiment import first_samples, parser, save, start  # noqa: E402

import backends  # noqa: E402
from framework.trainer import Trainer  # noqa: E402
from models import MultiLayerNet  # noqa: E402


def main(argv=None):
    p = parser(__doc__, "hyperparameter_search.png")
    p.add_argument("--trials", type=positive, default=100, help="trials (default: %(default)s)")
    p.add_argument("--epochs", type=positive, default=50, help="epochs a trial (default: 50)")
    p.add_argument("--top", type=positive, default=20, help="best trials to list and plot")
    p.add_argument("--train-size", type=positive,
                   help="the first samples to use (default: 500, or all where fewer)")
    args, backend, ((x_all, t_all), _), plt = start(p, argv)
    # one sample to validate on at least, and one to train on
    x, t = first_samples(p, x_all, t_all, args.train_size, 500, least=2)
    rng = backends.host_rng(args.seed)
    order = rng.permutation(x.shape[0])
    x, t = x[order], t[order]
    n_val = max(int(order.size * 0.2), 1)
    x_val, t_val, x_train, t_train = x[:n_val], t[:n_val], x[n_val:], t[n_val:]
    print(f"{x_train.shape[0]} training and {n_val} validation samples; {args.trials} trials "
          f"of {args.epochs} epochs")
    results = []
    for trial in range(args.trials):
        weight_decay = 10 ** rng.uniform(-8, -4)
        lr = 10 ** rng.uniform(-6, -2)
        network = MultiLayerNet(784, [100] * 6, 10, weight_decay_lambda=weight_decay,
                                seed=args.seed + trial)
        trainer = Trainer(network, x_train, t_train, x_val, t_val, epochs=args.epochs,
                          mini_batch_size=100, optimizer="sgd", optimizer_param={"lr": lr},
                          seed=args.seed + trial, verbose=False)
        trainer.train()
        results.append((trainer.test_acc_list[-1], lr, weight_decay, trainer.test_acc_list,
                        trainer.train_acc_list))
        print(f"  trial {trial + 1:>3}: val acc {results[-1][0]:.4f} | lr {lr:.3e}, "
              f"weight decay {weight_decay:.3e}", flush=True)
    results.sort(key=lambda r: -r[0])
    best = results[:args.top]
    print("=========== hyper-parameter search result ===========")
    for i, (val, lr, decay, *_) in enumerate(best):
        print(f"Best-{i + 1} (val acc: {val:.4f}) | lr: {lr:.3e}, weight decay: {decay:.3e}")
    cols = min(5, len(best))
    rows = math.ceil(len(best) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False,
                             sharex=True, sharey=True)
    for i, (ax, (val, lr, decay, val_curve, train_curve)) in enumerate(zip(axes.flat, best)):
        epochs = range(1, len(val_curve) + 1)
        ax.plot(epochs, val_curve, label="validation")
        ax.plot(epochs, train_curve, linestyle="--", label="train")
        ax.set_title(f"Best-{i + 1}: lr {lr:.1e}\ndecay {decay:.1e}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(best):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("epochs", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"random search, best {len(best)} of {args.trials} by validation accuracy "
                 f"({args.dataset})", fontsize=10)
    fig.tight_layout()
    save(fig, args.out)


if __name__ == "__main__":
    exit_on_interrupt(main)
