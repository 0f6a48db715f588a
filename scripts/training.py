"""What the training scripts share: their options, and one run from data to "final test acc".

``scripts/train_neuralnet.py`` (chapters 5-6) and ``scripts/train_convnet.py``
(chapters 7-8) differ only in the network they build and their defaults.
"""

import argparse
import os
import shlex
import shutil
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# On JAX, 64-bit types, unless the user said otherwise (before JAX is imported; a script owns
# its process, as a library does not): what a script computes in float64 (the gradient
# check's default) runs as on the other backends, and dropout's generator keeps its uint64
# form, as on NumPy. The networks stay float32: their dtype is explicit. Nothing changes on
# other backends.
os.environ.setdefault("JAX_ENABLE_X64", "1")

import backends  # noqa: E402
from framework.checkpoint import CheckpointError, existing as existing_checkpoint  # noqa: E402
from framework.datasets import DatasetError, dataset_folder, load_dataset  # noqa: E402
from framework.files import atomic_open  # noqa: E402
from framework.optimizers import OPTIMIZERS  # noqa: E402
from framework.trainer import REPLACE, Trainer, TrainingInterrupted  # noqa: E402
from scripts.arguments import (  # noqa: E402
    check_figure, check_output, figure_format, non_negative_seed, positive, positive_number)


def interpreter():
    """How to name this Python in a command to type: ``python`` where that is the one the
    shell finds, else its path (``.venv/bin/python`` for ``make train``'s run, relative to
    the folder the script runs in where it lies inside it), so the command runs here."""
    found = shutil.which("python")
    if found and os.path.realpath(found) == os.path.realpath(sys.executable):
        return "python"
    path = sys.executable
    relative = os.path.relpath(path)
    return relative if not relative.startswith(os.pardir) else path


def resume_command(processes=1):
    """This script's command line with ``--resume`` added (if it is not there already),
    under ``mpiexec -n N`` where ``processes`` ran it (a run resumes on any number, but
    the one it had is the one a user means to go on with), with this :func:`interpreter`."""
    args = [a for a in sys.argv[1:] if a != "--resume"]
    launcher = ["mpiexec", "-n", str(processes)] if processes > 1 else []
    return " ".join(shlex.quote(a) for a in [*launcher, interpreter(), sys.argv[0], *args,
                                            "--resume"])


def replaced_run(p, path):
    """A note for a new run whose ``--save`` names a checkpoint already there (it is
    replaced at the new run's first checkpoint), or None where there is none; ``p.error``
    where the file there is not a checkpoint, which the run would destroy."""
    try:
        meta = existing_checkpoint(path)
    except CheckpointError as e:
        p.error(f"--save {e}; {REPLACE}")
    if meta is None:
        return None
    trainer = meta.get("trainer")
    if trainer is None:  # save_params' file: a network, no run to go on with
        return (f"note: {path} holds a {meta.get('model', 'network')}'s parameters; this new "
                f"run replaces them at its first checkpoint")
    where = (f" at step {trainer['iteration']} of {trainer['max_iter']}"
             if {"iteration", "max_iter"} <= set(trainer) else "")
    return (f"note: {path} holds a run{where}; this new run replaces it at its first "
            f"checkpoint (--resume goes on with that run instead)")


def exit_on_interrupt(main):
    """Run ``main()``; Ctrl-C (SIGINT) or SIGTERM end the script with one line and exit
    status 130 or 143, as a shell reports a killed command, and no traceback.

    Under ``mpiexec`` a rank that ends with an error (an ``error:`` line, or a
    traceback) ends the whole job: the other ranks may be waiting for it in a
    collective, and would wait forever.
    """
    from framework import distributed
    world = distributed.world()
    if not world.is_root:  # data-parallel under mpiexec: rank 0 reports
        sys.stdout = open(os.devnull, "w")
    try:
        main()
    except SystemExit as e:
        if world.size > 1 and e.code not in (None, 0):  # its message is printed already
            world.communicator.abort(e.code if isinstance(e.code, int) else 1)
        raise
    except Exception:
        if world.size > 1:
            sys.stderr.write(f"rank {world.rank} of {world.size} failed; ending the job:\n"
                             + traceback.format_exc())
            world.communicator.abort(1)
        raise
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        if isinstance(e, TrainingInterrupted) and e.checkpoint:
            how = f"; {e.checkpoint} holds it. Resume with: {resume_command(world.size)}"
        elif isinstance(e, TrainingInterrupted):
            how = "; nothing was saved (give --save PATH to keep interrupted runs)"
        else:
            how = ""
        where = (f" after step {e.step} of {e.max_iter} (epoch {e.epoch})"
                 if isinstance(e, TrainingInterrupted) else "")
        if distributed.world().is_root:
            print(f"\ninterrupted by {signal.Signals(signum).name}{where}{how}",
                  file=sys.stderr, flush=True)
        sys.exit(128 + signum)


def data_and_device_options(doc):
    """An ``ArgumentParser`` with what every script that trains takes: the dataset and
    where it lies, the backend and its device."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir", help="folder holding the IDX files (else the usual search)")
    p.add_argument("--backend", choices=backends.CHOICES, help="overrides XPNET_BACKEND")
    p.add_argument("--device", help="the backend's device (cpu, cuda:1, mps, device1); overrides "
                                    "XPNET_DEVICE")
    return p


def parser(doc, *, iters=None, epochs=None, lr, optimizer):
    """An ``ArgumentParser`` with the options every training script takes, and its defaults."""
    p = data_and_device_options(doc)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--iters", type=positive,
                        help=f"training steps{f' (default: {iters})' if iters else ''}")
    length.add_argument("--epochs", type=positive_number,
                        help=f"training epochs{f' (default: {epochs})' if epochs else ''}")
    p.set_defaults(default_iters=iters, default_epochs=epochs)
    p.add_argument("--batch-size", type=positive, default=100)
    p.add_argument("--lr", type=positive_number, default=lr,
                   help="learning rate (default: %(default)s)")
    p.add_argument("--optimizer", default=optimizer, type=str.lower, choices=sorted(OPTIMIZERS))
    p.add_argument("--seed", type=non_negative_seed, default=0,
                   help="seeds weights and batch order")
    p.add_argument("--drop-last", action="store_true",
                   help="leave out each epoch's short last batch (with --sampling epoch; batch "
                        "norm cannot normalise a last batch of one sample)")
    p.add_argument("--sampling", default="epoch", choices=["epoch", "choice"],
                   help="a permutation per epoch, or the book's sampling with replacement")
    p.add_argument("--save", metavar="PATH", help="checkpoint (.npz) written at every epoch end")
    p.add_argument("--resume", action="store_true", help="continue from --save PATH")
    p.add_argument("--plot", metavar="PATH", help="write the loss and accuracy curves (a PNG; "
                                                  "the suffix picks the format: .pdf, .svg)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--graph", default="auto", choices=["auto", "on", "off"],
                   help="replay each step as a CUDA graph (CuPy, PyTorch on CUDA; default: "
                   "where it is faster), or compile it with jax.jit (JAX)")
    return p


def data_source_note(args):
    """A line where ``--data-dir`` (or ``XPNET_DATA_DIR``) named a folder and the data came
    from elsewhere (a typo there reads the cache's or Debian's copy silently otherwise);
    else None."""
    if args.data_dir:
        option, wanted = "--data-dir", "data_dir argument"
    elif backends.settings().data_dir:
        option, wanted = "XPNET_DATA_DIR", "XPNET_DATA_DIR"
    else:
        return None
    (label, folder), passed = dataset_folder(args.dataset, args.data_dir)
    if label == wanted or folder is None:
        return None
    passed = [place for place in passed if f" ({wanted}): " in place]
    return (f"note: {option} did not hold {args.dataset} ({'; '.join(passed)}); read from "
            f"{folder} ({label})")


def save_figure(fig, path):
    """Write ``fig`` to ``path`` in the format its suffix names (a PNG without one),
    atomically (an earlier figure is never half-replaced), and close it; under ``mpiexec``
    rank 0 writes it (every rank drew the same figure). A write that fails ends the script
    with one ``error:`` line."""
    import matplotlib.pyplot as plt
    from framework import distributed
    try:
        if distributed.world().is_root:
            with atomic_open(path) as f:
                fig.savefig(f, dpi=100, format=figure_format(path))
    except OSError as e:
        raise SystemExit(f"error: cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def check_args(p, args):
    """The checks every training script makes after parsing; fills the default length."""
    if args.resume and not args.save:
        p.error("--resume needs --save PATH (the checkpoint to continue from)")
    check_figure(p, "--plot", args.plot)
    check_output(p, "--save", args.save)  # a folder there: named as one, not as a damaged file
    args.replaced = replaced_run(p, args.save) if args.save and not args.resume else None
    if args.iters is None and args.epochs is None:
        args.iters, args.epochs = args.default_iters, args.default_epochs


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
    save_figure(fig, path)


def run(parser, args, build_network, *, flatten=True, evaluate_sample_num_per_epoch=None):
    """Load the data, build the network (``build_network(args, x_train)``), train, report.

    Errors end the script as argparse does: one ``error:`` line, exit 2 for
    bad options, 1 for missing data or a failed run (a checkpoint that
    cannot be written included). Interrupts propagate as
    :class:`framework.trainer.TrainingInterrupted`: wrap ``main`` in
    :func:`exit_on_interrupt`.
    """
    try:
        backend = backends.chosen(args.backend, args.device)
    except (ValueError, RuntimeError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"backend: {backend.name} ({backend.description})", flush=True)
    if getattr(args, "replaced", None):
        print(args.replaced, flush=True)
    try:
        (x_train, t_train), (x_test, t_test) = load_dataset(args.dataset, flatten=flatten,
                                                            data_dir=args.data_dir)
    except DatasetError as e:
        parser.exit(1, f"error: {e}\n")
    print(f"data: {args.dataset}, {x_train.shape[0]} train / {x_test.shape[0]} test", flush=True)
    note = data_source_note(args)
    if note:
        print(note, flush=True)

    try:
        network = build_network(args, x_train)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    arguments = ", ".join(f"{k}={v!r}" for k, v in network.config().items())
    print(f"network: {type(network).__name__}({arguments})", flush=True)
    try:
        trainer = Trainer(network, x_train, t_train, x_test, t_test,
                          epochs=1 if args.epochs is None else args.epochs, iters=args.iters,
                          mini_batch_size=args.batch_size, optimizer=args.optimizer,
                          optimizer_param={"lr": args.lr}, verbose=not args.quiet,
                          seed=args.seed, sampling=args.sampling, checkpoint=args.save,
                          evaluate_sample_num_per_epoch=evaluate_sample_num_per_epoch,
                          resume=args.resume, drop_last=args.drop_last,
                          graph={"auto": "auto", "on": True, "off": False}[args.graph])
    except CheckpointError as e:
        parser.exit(1, f"error: cannot resume: {e}\n")
    except ValueError as e:  # a learning rate, batch size or length out of range
        parser.exit(2, f"error: {e}\n")
    if args.resume and not os.path.exists(args.save):  # a job's first run, or a typo
        print(f"note: {args.save} does not exist yet: --resume starts a new run, which "
              f"writes it")
    if trainer.step:
        print(f"resumed from {args.save} at step {trainer.step} (epoch "
              f"{trainer.current_epoch + (1 if trainer.step > trainer.iteration else 0)})")
        if trainer.optimizer.lr != args.lr:  # the resume brought the run's own rate
            print(f"learning rate: {args.lr:g} (--lr), where the run stood at "
                  f"{trainer.optimizer.lr:g}")
            trainer.optimizer.lr = args.lr
        if trainer.step >= trainer.max_iter:
            print(f"nothing to train: the run is at step {trainer.step} and --iters/--epochs "
                  f"end it at step {trainer.max_iter}; give more to train on")
    first_step, first_epoch = trainer.step, trainer.current_epoch
    start = time.perf_counter()
    try:
        trainer.train()
    except FloatingPointError as e:  # the global batch's loss: every rank stops here alike
        parser.exit(1, f"error: {e}\n" if trainer.world.is_root else None)
    except (ValueError, CheckpointError) as e:
        parser.exit(1, f"error: {e}\n")
    seconds = time.perf_counter() - start  # train() ends on a host read: the GPU is done
    evaluations = trainer.current_epoch - first_epoch
    print(f"trained {trainer.iteration - first_step} steps in {seconds:.2f} s ({evaluations} "
          f"epoch evaluation{'' if evaluations == 1 else 's'} included)")
    made = {"cuda-graph": "recorded", "jit": "traced and compiled"}.get(trainer.step_mode)
    recorded = (f", {made} in {trainer.graph_seconds:.2f} s (included above)" if made else "")
    if trainer.step_mode is not None:  # None: no step ran
        print(f"step: {trainer.step_mode}{recorded}")
    if backend.name == "cupy":
        pools = {name: held / 2**20 for name, held in trainer.gpu_pools().items()}
        data = sum(a.nbytes for a in (trainer.batches.x, trainer.batches.t, trainer.x_test,
                                      trainer.t_test)) / 2**20
        print(f"GPU memory: {sum(pools.values()):.1f} MB held by CuPy's pools: "
              f"{pools['default']:.1f} MB in the default pool (the data, any eager steps), "
              f"{pools['scratch']:.1f} MB in the scratch pool (what the evaluations and the "
              f"eager trial left in use), {pools['graph']:.1f} MB in the graph's (the data: "
              f"{data:.1f} MB; training set {trainer.batches.x.nbytes / 2**20:.1f} MB as "
              f"float32)")
    if args.plot and trainer.world.is_root:
        plot(args.plot, trainer)
        print(f"plot: {args.plot}")
    if args.save:
        print(f"checkpoint: {args.save}")
    print(f"final test acc: {trainer.final_test_acc:.4f}")
