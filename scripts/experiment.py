"""What chapter 6's experiment scripts share: their options, data, a step loop and figures.

Each script takes ``--dataset``, ``--data-dir``, ``--backend``, ``--seed``
and ``--out PNG``, prints its numbers and writes its figure (written whole
or not at all).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backends  # noqa: E402
from framework import data_parallel, distributed, steps  # noqa: E402
from framework.data import DeviceBatches  # noqa: E402
from framework.datasets import DatasetError, load_dataset  # noqa: E402
from scripts.arguments import check_figure, non_negative_seed  # noqa: E402
from scripts.training import (  # noqa: E402
    data_and_device_options, data_source_note, save_figure)


def parser(doc, out):
    """An ``ArgumentParser`` with the options every experiment takes; ``out`` is the PNG's default."""
    p = data_and_device_options(doc)
    p.add_argument("--seed", type=non_negative_seed, default=0,
                   help="seeds weights and batches (default: 0)")
    p.add_argument("--out", default=out, metavar="PNG",
                   help="figure to write; its suffix picks the format (default: %(default)s)")
    return p


def start(p, argv=None):
    """Parse, pick the backend and load the data (host arrays); errors end the script as argparse's do."""
    args = p.parse_args(argv)
    check_figure(p, "--out", args.out)
    try:
        backend = backends.chosen(args.backend, args.device)
    except (ValueError, RuntimeError) as e:
        p.exit(2, f"error: {e}\n")
    try:
        data = load_dataset(args.dataset, data_dir=args.data_dir)
    except DatasetError as e:
        p.exit(1, f"error: {e}\n")
    plt = pyplot(p)
    print(f"backend: {backend.name} ({backend.description}); data: {args.dataset}, "
          f"{data[0][0].shape[0]} train / {data[1][0].shape[0]} test", flush=True)
    note = data_source_note(args)
    if note:
        print(note, flush=True)
    return args, backend, data, plt


def first_samples(p, x, t, size, default, least=1):
    """The first ``size`` training samples (``--train-size``), or the first ``default`` (the
    book's number) when not given, all of them where the dataset has fewer. An error, as
    argparse's, when a ``size`` asked for is more than the dataset has, or either is below
    ``least``."""
    if size is not None and size > x.shape[0]:
        p.exit(2, f"error: --train-size {size} is more than the {x.shape[0]} training samples "
                  f"the dataset has\n")
    if size is None and x.shape[0] < least:
        p.exit(2, f"error: the dataset has {x.shape[0]} training samples; this needs at least "
                  f"{least}\n")
    if size is not None and size < least:
        p.exit(2, f"error: --train-size must be at least {least}, got {size}\n")
    size = min(default, x.shape[0]) if size is None else size
    return x[:size], t[:size]


def pyplot(p):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        p.exit(1, "error: matplotlib is needed: pip install 'xpnet[plot]' (make train installs it)\n")
    return plt


def batches_of(x, t, batch_size, backend):
    """The training set on ``backend``, once, for :func:`train_losses` (the book's sampling)."""
    return DeviceBatches(x, t, batch_size, shuffle=False, replacement=True, backend=backend,
                         dtype="float32")


def train_losses(network, optimizer, batches, iters, seed):
    """The book's loop: ``iters`` steps on batches drawn with replacement (the same draws
    for the same ``seed``); the per-step losses as floats, read from the device at the end.

    Under ``mpiexec`` it is data-parallel as the Trainer is: every rank draws the same
    batches, computes the gradient of its shard, and the ranks' parts are summed
    (:func:`framework.data_parallel.train_step`, the Trainer's step), so N ranks draw one
    process's curves.
    """
    world = distributed.world()
    communicator, _ = world.communicator_for(batches.backend)
    data_parallel.prepare(network, world, communicator)  # batch norm over the whole batch
    batches.rng = backends.host_rng(seed)
    losses = []  # 0-d arrays on the device (JAX's cannot be written into one array)
    with distributed.abort_on_error(world), backends.cpu_share():
        while len(losses) < iters:
            order = batches.start_epoch()
            for j in range(min(len(batches), iters - len(losses))):
                x, t = batches.batch(order, j)
                losses.append(
                    steps.train_step(network, optimizer, x, t) if world.size == 1
                    else data_parallel.train_step(network, optimizer, x, t, world, communicator))
    return backends.to_numpy(batches.xp.stack(losses)).tolist()


def save(fig, path):
    """Write ``fig`` to ``path`` (:func:`scripts.training.save_figure`) and say so."""
    save_figure(fig, path)
    print(f"figure: {path}")


def print_loss_table(curves, iters, every=500, window=100):
    """Each curve's mean loss over the ``window`` steps up to every ``every``-th step."""
    marks = sorted({min(iters, m) for m in range(every, iters + 1, every)} | {iters})
    window = min(window, marks[0])  # a short run: every mean over as many steps as said
    print(f"mean loss of the {window} steps up to step".ljust(38)
          + "".join(f"{m:>8}" for m in marks))
    for name, losses in curves.items():
        means = [sum(losses[max(0, m - window):m]) / len(losses[max(0, m - window):m])
                 for m in marks]
        print(f"  {name:<36}" + "".join(f"{v:8.4f}" for v in means))
