"""5.7.4: train TwoLayerNet with backprop (book: ch05/train_neuralnet.py), or a deeper net.

By default the book's run: TwoLayerNet(784, 50, 10), 10,000 steps of batch
100, SGD with lr 0.1, train and test accuracy once per epoch. ``--model
multi-layer`` trains chapter 6's MultiLayerNet instead (MultiLayerNetExtend
with --batchnorm or --dropout), e.g.

  train_neuralnet.py --model multi-layer --hidden 100,100,100 --batchnorm \
      --dropout 0.2 --weight-decay 0.001 --optimizer adam --lr 0.001

Runs on the backend XPNET_BACKEND picks (or --backend). The last line
printed is ``final test acc: 0.xxxx``.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backends  # noqa: E402
from framework.checkpoint import CheckpointError  # noqa: E402
from framework.datasets import DatasetError, load_dataset  # noqa: E402
from framework.files import atomic_open  # noqa: E402
from framework.optimizers import OPTIMIZERS  # noqa: E402
from framework.trainer import Trainer  # noqa: E402
from models import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet  # noqa: E402


def size_list(text):
    """``"100,100"`` -> ``[100, 100]``; ``""`` -> ``[]`` (argparse type; sizes checked by the model)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
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
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir", help="folder holding the IDX files (else the usual search)")
    p.add_argument("--backend", choices=backends.CHOICES, help="overrides XPNET_BACKEND")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--iters", type=int, help="training steps (default: 10000)")
    length.add_argument("--epochs", type=float, help="training epochs, instead of --iters")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default: %(default)s)")
    p.add_argument("--optimizer", default="sgd", type=str.lower, choices=sorted(OPTIMIZERS))
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
    p.add_argument("--dropout", type=float, metavar="RATIO",
                   help="multi-layer: dropout with this ratio")
    p.add_argument("--weight-decay", type=float, default=0, metavar="LAMBDA",
                   help="multi-layer: L2 weight decay lambda (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seeds weights and batch order")
    p.add_argument("--sampling", default="epoch", choices=["epoch", "choice"],
                   help="a permutation per epoch, or the book's sampling with replacement")
    p.add_argument("--save", metavar="PATH", help="checkpoint (.npz) written at every epoch end")
    p.add_argument("--resume", action="store_true", help="continue from --save PATH")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of loss and accuracy curves")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--graph", default="auto", choices=["auto", "on", "off"],
                   help="replay each step as a CUDA graph on CuPy (default: where possible)")
    args = p.parse_args(argv)
    if args.resume and not args.save:
        p.error("--resume needs --save PATH (the checkpoint to continue from)")
    if args.iters is None and args.epochs is None:
        args.iters = 10000
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


def build_network(args, input_size):
    """The network the options describe (ValueError for sizes or names it refuses)."""
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


def plot(path, trainer):
    """Training loss per step and train/test accuracy per epoch, side by side."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("error: --plot needs matplotlib: pip install 'xpnet[plot]' "
                         "(make train installs it)")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(range(1, len(trainer.train_loss_list) + 1), trainer.train_loss_list,
                 linewidth=0.5, alpha=0.6, label="per step")
    ax_loss.plot([r * trainer.iter_per_epoch for r in trainer.history["epoch"]],
                 trainer.history["loss"], color="black", marker=".", label="epoch mean")
    ax_loss.legend(loc="upper right")
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    epochs = trainer.history["epoch"]
    ax_acc.plot(epochs, trainer.train_acc_list, marker="o", label="train")
    ax_acc.plot(epochs, trainer.test_acc_list, marker="s", linestyle="--", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend(loc="lower right")
    fig.tight_layout()
    try:
        with atomic_open(path) as f:  # an earlier plot is never half-replaced
            fig.savefig(f, dpi=100, format="png")
    finally:
        plt.close(fig)


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        backend = backends.use(args.backend) if args.backend else backends.current()
    except (ValueError, RuntimeError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"backend: {backend.name} ({backend.device})", flush=True)
    try:
        (x_train, t_train), (x_test, t_test) = load_dataset(args.dataset, data_dir=args.data_dir)
    except DatasetError as e:
        parser.exit(1, f"error: {e}\n")
    print(f"data: {args.dataset}, {x_train.shape[0]} train / {x_test.shape[0]} test", flush=True)

    try:
        network = build_network(args, x_train.shape[1])
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    arguments = ", ".join(f"{k}={v!r}" for k, v in network.config().items())
    print(f"network: {type(network).__name__}({arguments})", flush=True)
    try:
        trainer = Trainer(network, x_train, t_train, x_test, t_test,
                          epochs=args.epochs or 1, iters=args.iters,
                          mini_batch_size=args.batch_size, optimizer=args.optimizer,
                          optimizer_param={"lr": args.lr}, verbose=not args.quiet,
                          seed=args.seed, sampling=args.sampling, checkpoint=args.save,
                          resume=args.resume,
                          graph={"auto": "auto", "on": True, "off": False}[args.graph])
    except CheckpointError as e:
        parser.exit(1, f"error: cannot resume: {e}\n")
    if trainer.iteration:
        print(f"resumed from {args.save} at step {trainer.iteration} (epoch {trainer.current_epoch})")
    first_step, first_epoch = trainer.iteration, trainer.current_epoch
    start = time.perf_counter()
    try:
        trainer.train()
    except (FloatingPointError, ValueError) as e:
        parser.exit(1, f"error: {e}\n")
    seconds = time.perf_counter() - start  # train() ends on a host read: the GPU is done
    evaluations = trainer.current_epoch - first_epoch
    print(f"trained {trainer.iteration - first_step} steps in {seconds:.2f} s ({evaluations} "
          f"epoch evaluation{'' if evaluations == 1 else 's'} included)")
    recorded = (f", recorded in {trainer.graph_seconds:.2f} s (included above)"
                if trainer.step_mode == "cuda-graph" else "")
    print(f"step: {trainer.step_mode}{recorded}")
    if backend.name == "cupy":
        held = trainer.gpu_pool_bytes()
        print(f"GPU memory: {held / 2**20:.1f} MB held by CuPy's pools, the graph's included "
              f"(training set {trainer.batches.x.nbytes / 2**20:.1f} MB as float32)")
    if args.plot:
        plot(args.plot, trainer)
        print(f"plot: {args.plot}")
    if args.save:
        print(f"checkpoint: {args.save}")
    print(f"final test acc: {trainer.final_test_acc:.4f}")


if __name__ == "__main__":
    main()
