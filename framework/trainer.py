"""The training loop: minibatches on the device, a progress bar, epoch reports, checkpoints.

What a checkpoint holds of the run is :mod:`framework.trainer_state`'s; how Ctrl-C and
SIGTERM stop it, :mod:`framework.interrupts`'.
"""

import contextlib
import inspect
import math
import numbers
import os
import sys
import time
import warnings

import array_api_extra as xpx

import backends
from backends.arrays import check_flag
from framework import data_parallel, distributed, files, interrupts, replicas, steps, trainer_state
from framework.adopted_optimizer import optimizer_for
from framework.checkpoint import CheckpointError, existing as existing_checkpoint
from framework.data import DeviceBatches, as_labels, check_data
from framework.gradient import LowPrecisionWarning
from framework.history import History
from framework.interrupts import TrainingInterrupted
from framework.layers import BatchNormalization
from framework.optimizers import float16_trouble


def _check_arguments(sampling, graph, epochs, iters, evaluate_sample_num_per_epoch,
                     refresh_seconds, mini_batch_size):
    """``ValueError`` naming the first of the Trainer's arguments that is out of range."""
    size = _as_number(mini_batch_size)  # by the Trainer's name for it, not DeviceBatches'
    if not (math.isfinite(size) and size >= 1 and size.is_integer()):
        raise ValueError(f"Trainer: mini_batch_size must be a whole number at least 1, got "
                         f"{mini_batch_size!r}")
    if not (math.isfinite(_as_number(refresh_seconds)) and refresh_seconds >= 0):
        raise ValueError(f"Trainer: refresh_seconds must be a number of seconds, 0 or more, "
                         f"got {refresh_seconds!r}")  # else a TypeError deep in the run
    if sampling not in ("epoch", "choice"):
        raise ValueError(f"Trainer: sampling={sampling!r}; expected 'epoch' or 'choice'")
    if not (isinstance(graph, bool) or graph == "auto"):  # 1 == True, but not `is True`
        raise ValueError(f"Trainer: graph={graph!r}; expected 'auto', True or False")
    for name, value, low in (("epochs", epochs, 0), ("iters", iters, 1),
                             ("evaluate_sample_num_per_epoch", evaluate_sample_num_per_epoch, 1)):
        if value is None or name == "epochs" and iters is not None:
            continue
        number = _as_number(value)
        if not (math.isfinite(number) and (number > low if name == "epochs" else
                                           number >= low)):
            bound = "above 0" if name == "epochs" else f"at least {low}"
            raise ValueError(f"Trainer: {name} must be a number {bound}, got {value!r}")
        if name != "epochs" and not number.is_integer():  # 2.5 steps ran 2, a slice failed
            raise ValueError(f"Trainer: {name} must be a whole number, got {value!r}")


def _as_number(value):
    """``value`` as a float where it is a real number (Python's or NumPy's, not a bool),
    else NaN: what the length checks compare, so that anything else fails them."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _checked_callbacks(callbacks):
    """``callbacks`` as a list (one callable alone counts as a list of one); ``ValueError``
    naming one that cannot be called, now rather than at the first epoch's end."""
    if callable(callbacks):
        return [callbacks]
    try:
        out = list(callbacks)
    except TypeError:
        raise ValueError(f"Trainer: callbacks must be a list of functions f(trainer, record), "
                         f"got {callbacks!r}") from None
    for c in out:
        if not callable(c):
            raise ValueError(f"Trainer: callbacks must be functions f(trainer, record); "
                             f"{c!r} cannot be called")
        try:
            signature = inspect.signature(c)
        except (TypeError, ValueError):  # a builtin without one: called, and it says
            continue
        try:
            signature.bind(None, None)
        except TypeError as e:  # else found at the first epoch's end, an epoch lost
            raise ValueError(f"Trainer: callbacks are called as f(trainer, record); "
                             f"{getattr(c, '__qualname__', c)}{signature} cannot take them: "
                             f"{e}") from None
    return out


def _check_checkpoint_path(path, resume):
    """``ValueError`` now, not after an epoch's training, where a checkpoint could not be
    written there (a folder in its place, or a folder that cannot be made or written to),
    or where a new run (not ``resume``) would replace a file that is not a checkpoint."""
    why = files.unwritable(path)
    if why:
        example = f" (such as {os.path.join(path, 'run.npz')!r})" if os.path.isdir(path) else ""
        raise ValueError(f"Trainer: checkpoint={path!r}: {why}{example}")
    if not resume:
        try:
            existing_checkpoint(path)
        except CheckpointError as e:
            raise ValueError(f"Trainer: checkpoint={e}; {REPLACE}") from None


#: what to do where a new run's checkpoint would replace a file that is not one
REPLACE = "a new run would replace it: name another file, or move this one away"


def _check_batch_norm_batches(network, batches):
    """``ValueError`` where a network with batch norms would train on a batch of one sample:
    ``mini_batch_size=1``, a training set of one, or an epoch's short last batch of one
    (51 samples in batches of 10, without ``drop_last``). Such a batch is its own mean: the
    layer passes no gradient and pulls its running variance towards 0 (the layer refuses
    one in training; said here, before the run, with what to change). The whole batch
    counts, as in a data-parallel step, whose synchronised batch norms see all of it."""
    norms = [name for name, layer in data_parallel.layers_of(network)
             if isinstance(layer, BatchNormalization)]
    if not norms:
        return
    size, batch = batches.size, batches.batch_size
    if batch == 1:
        where, fix = f"mini_batch_size={batch}", "give batches of at least 2 samples"
    elif size == 1:
        where, fix = "the training set holds one sample", "give it at least 2"
    elif batches.short_batch == 1:
        where = (f"each epoch's last batch would hold one sample ({size} samples in batches "
                 f"of {batch})")
        fix = ("pass drop_last=True (--drop-last in the scripts: that sample waits for the "
               "next epoch's order), or another mini_batch_size")
    else:
        return
    raise ValueError(f"Trainer: {where}, and {type(network).__name__} normalises over the "
                     f"batch ({', '.join(map(str, norms))}): a batch of one sample is its own "
                     f"mean, so the layer would pass no gradient and pull its running variance "
                     f"towards 0; {fix}")


def _shows_a_bar(bar_class):
    """Whether a progress bar of ``bar_class`` (``tqdm.auto``'s choice) reads as one: in a
    notebook (tqdm's widget), or where stderr is a terminal. In a file or a pipe each
    refresh is one more line (Keras's ``verbose='auto'`` draws none there either)."""
    if any(c.__module__ == "tqdm.notebook" for c in bar_class.__mro__):
        return True
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # none, or closed
        return False


def _check_network(network):
    """``TypeError`` naming what the run will call that ``network`` lacks: ``params``,
    ``gradient(x, t)`` at every step, ``accuracy(x, t)`` at every epoch's end (a network
    of the user's own without one trained an epoch, then ended in Python's
    AttributeError)."""
    name = type(network).__name__
    params = getattr(network, "params", None)
    if not hasattr(params, "values") or not params:
        raise TypeError(f"Trainer: {name} has no params (the book's dict of parameter "
                        f"arrays by name) to train")
    for method, when in (("gradient", "at every step"), ("accuracy", "at every epoch's end")):
        if not callable(getattr(network, method, None)):
            raise TypeError(f"Trainer: {name} has no {method}(x, t), which the Trainer calls "
                            f"{when}; the book's networks have one")


def _check_world(world, graph, mini_batch_size):
    """``ValueError`` where the run cannot be data-parallel as asked."""
    if world.size > 1 and graph is True:
        raise ValueError(f"Trainer: graph=True, but the step cannot be a CUDA graph: a "
                         f"data-parallel step ({world.size} processes) is not recorded; "
                         f"graph='auto' or False runs it eagerly")
    if world.size > 1 and mini_batch_size < world.size:
        raise ValueError(f"Trainer: mini_batch_size={mini_batch_size} is the global batch "
                         f"and must give each of the {world.size} processes a sample")


class Trainer:
    """Train ``network`` on ``(x_train, t_train)``, reporting on ``(x_test, t_test)`` each epoch.

    The book's constructor (``ch06``'s ``common/trainer.py``), with keyword
    extras. ``optimizer`` is the book's name (any case, with ``optimizer_param``), one of
    :mod:`framework.optimizers` built, or one of the reader's own with
    ``update(params, grads)`` (:mod:`framework.adopted_optimizer`).

    ``iters``
        total steps, overriding ``epochs`` (the book's run is 10,000 steps:
        16 epochs of 600 and a last one of 400).
    ``seed``
        seeds the batch order, so a run repeats exactly.
    ``verbose``
        (the book's) a line at each epoch's end; and, on a terminal or in a notebook,
        a progress bar showing the recent loss. Where stderr is a file or a pipe (``nohup``,
        a batch job's log) there is no bar: tqdm would rewrite its line there twice a
        second, thousands of lines an hour, each read from the device.
    ``sampling``
        ``'epoch'`` (default): a permutation per epoch, every sample once;
        ``'choice'``: the book's ``np.random.choice`` sampling with replacement.
    ``drop_last``
        with ``sampling='epoch'``, leave out each epoch's short last batch (the samples
        it would hold, different ones each epoch, wait for the next permutation), as
        PyTorch's ``DataLoader(drop_last=True)``: every step then sees ``mini_batch_size``
        samples. Batch normalization needs it where a last batch would hold one sample
        (51 samples in batches of 10): one sample is its own mean, so such a step passes
        no gradient through the layer and pulls the running variance towards 0. A set
        smaller than one batch still trains on all of it. False by default, the book's
        epoch.
    ``checkpoint``, ``resume``
        save parameters, history and optimizer state to this ``.npz`` at
        every epoch end (its folder is made, and checked writable, at once; a new
        run replaces a checkpoint there, and refuses a file that is not one);
        ``resume=True`` continues from it where the file exists (else the run starts
        anew, as a job's first run does), the optimizer with the settings the run
        had reached (a learning rate a schedule changed): set
        ``trainer.optimizer.lr`` after building the Trainer to go on with another.
    ``callbacks``
        callables ``f(trainer, record)`` run at every epoch end (a list, or one alone).
    ``refresh_seconds``
        how often, at most, the progress bar reads the loss from the device (0.5 s).
    ``graph``
        ``'auto'`` (default): on CuPy, and on PyTorch's CUDA devices, replay each
        step as one CUDA graph (:class:`framework.steps.GraphStep`) where the step
        allows it and a few timed steps show it faster than the eager one
        (convolutions' large products may run faster on cuBLAS than on the graph's
        own GEMM); on JAX, compile it with ``jax.jit``
        (:class:`framework.steps.JitStep`); else run it eagerly. ``True``: the graph
        or the compiled step, or an error saying why not; ``False``: always eager.
        ``XPNET_CUDA_GRAPH=0`` turns ``'auto'``'s CUDA graphs off.
        :attr:`step_mode` says which ran and why. The graph bakes in the
        optimizer's numbers, weight decay and the layers' settings: one changed
        between epochs (a learning-rate schedule in a callback) is seen, and the
        step is recorded again.
        Data-parallel (under ``mpiexec``) the step is never recorded: ``'auto'``
        runs it eagerly, ``True`` is an error.

    The data is sent to the network's backend once. The step loop never
    waits for the GPU: each step's loss (from the forward pass of
    ``gradient``, before the update -- the book computes it again after)
    is written into a device buffer, which is read at the progress bar's
    refresh interval and at epoch ends. The book-compatible lists
    ``train_loss_list`` (per step), ``train_acc_list`` and ``test_acc_list``
    (per epoch) hold Python floats.

    The data are checked once on the way in (:func:`framework.data.check_data`:
    NaN or infinite values, lengths, label types, empty sets), so a NaN or
    infinite loss in the run means divergence: it stops training with
    ``FloatingPointError`` naming the step and whether the parameters went
    non-finite; the last checkpoint, written before that epoch, is left as it was.
    """

    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20, mini_batch_size=100,
                 optimizer="SGD", optimizer_param=None, evaluate_sample_num_per_epoch=None,
                 verbose=True, *, iters=None, seed=None, sampling="epoch", checkpoint=None,
                 resume=False, callbacks=(), refresh_seconds=0.5, graph="auto",
                 sync_batchnorm=True, check_replicas=False, drop_last=False):
        _check_arguments(sampling, graph, epochs, iters, evaluate_sample_num_per_epoch,
                         refresh_seconds, mini_batch_size)
        if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
            raise ValueError(f"Trainer: checkpoint must be a file's path (a str or "
                             f"os.PathLike), got {checkpoint!r}")  # was os.fspath's TypeError
        mini_batch_size = int(mini_batch_size)  # NumPy's integers, or 100.0, as 100
        _check_network(network)
        # the run's parts, each owning its state: the world it runs in, the batches, the
        # history, the step (made when training starts); the network and optimizer
        self.world = distributed.world()
        _check_world(self.world, graph, mini_batch_size)
        # data-parallel: an error on one rank from here on must end the job, not leave the
        # others waiting in a collective (the broadcasts below, the first gradient sum)
        with distributed.abort_on_error(self.world):
            self.network = network
            self.backend = backends.backend_of(next(iter(network.params.values())))
            if not self.backend.mutable and not getattr(network.params, "reaches_layers",
                                                        False):
                raise ValueError(
                    f"Trainer: {type(network).__name__}'s params are a plain dict, and "
                    f"{self.backend.name}'s arrays are immutable: each update puts new "
                    f"arrays in params, which its layers would never see. Build it on "
                    f"models.base.Network (begin/add/finish), whose params pass each new "
                    f"array on to its layer")
            # NCCL between CuPy GPUs, else MPI: every rank decides the same (a collective);
            # ``communication`` says in words where the gradients are summed, and why
            self.communicator, self.communication = self.world.communicator_for(self.backend)
            self.sync_batchnorm = check_flag("Trainer", "sync_batchnorm", sync_batchnorm)
            # data-parallel: compare the ranks' parameters at each epoch's end
            self.check_replicas = check_flag("Trainer", "check_replicas", check_replicas)
            self._on_host = self.backend.in_host_memory()  # NumPy, the CPU's tensors and arrays
            if self.world.size > 1:
                seed = self._data_parallel_network(seed)
            self.optimizer = optimizer_for(optimizer, optimizer_param)
            self.verbose = check_flag("Trainer", "verbose", verbose) and self.world.is_root  # one bar
            num_classes = (network.config().get("output_size") if hasattr(network, "config")
                           else None)
            dtype = steps.network_dtype(network)
            trouble = float16_trouble(self.optimizer)
            if trouble and backends.dtype_name(dtype) == "float16":
                warnings.warn(f"Trainer: {type(network).__name__} computes in float16, where "
                              f"this run is likely to diverge within a few steps: {trouble}",
                              LowPrecisionWarning, stacklevel=2)
            self.batches = DeviceBatches(x_train, t_train, mini_batch_size,
                                         shuffle=(sampling == "epoch"),
                                         replacement=(sampling == "choice"), seed=seed,
                                         backend=self.backend, dtype=dtype,
                                         num_classes=num_classes,
                                         drop_last=check_flag("Trainer", "drop_last", drop_last),
                                         where="Trainer", names=("x_train", "t_train"))
            _check_batch_norm_batches(network, self.batches)
            if graph is True and self.world.size == 1:  # said now, not after a 0% bar
                steps.refuse_unrecordable(self.optimizer, self.batches)
            t_test = as_labels(t_test, num_classes)  # a column of labels, as labels
            check_data("Trainer", x_test, t_test, num_classes, names=("x_test", "t_test"))
            if tuple(x_test.shape[1:]) != tuple(x_train.shape[1:]):  # else found after an epoch
                raise ValueError(f"Trainer: x_test's samples have shape "
                                 f"{tuple(x_test.shape[1:])}, x_train's "
                                 f"{tuple(x_train.shape[1:])}; expected the same")
            self.x_test = self.backend.asarray(x_test, dtype=dtype)
            self.t_test = self.backend.asarray(t_test)
            self.history = History()
            self.evaluate_sample_num_per_epoch = (None if evaluate_sample_num_per_epoch is None
                                                  else int(evaluate_sample_num_per_epoch))
            self.iter_per_epoch = len(self.batches)
            self.max_iter = int(iters) if iters is not None else int(epochs * self.iter_per_epoch)
            if self.max_iter < 1:
                raise ValueError(f"Trainer: nothing to train: epochs={epochs} of "
                                 f"{self.iter_per_epoch} step(s) each ({len(x_train)} samples "
                                 f"in batches of {self.batches.batch_size}) is "
                                 f"{self.max_iter} steps; give more epochs, or iters")
            self.epochs = math.ceil(self.max_iter / self.iter_per_epoch)
            resume = check_flag("Trainer", "resume", resume)
            if checkpoint is not None:
                checkpoint = files.user_path(checkpoint, "Trainer: checkpoint")
            if checkpoint is not None and self.world.is_root:  # rank 0 writes it
                _check_checkpoint_path(checkpoint, resume)
            self.checkpoint = checkpoint
            self.callbacks = _checked_callbacks(callbacks)
            self.refresh_seconds = refresh_seconds
            self.graph = graph
            self.step_mode = None  # "cuda-graph", "jit" or "eager (why)", decided at the start
            self.graph_seconds = None  # time spent recording the graph (kernel builds included)
            self._step = None  # the step (framework.steps.Step), made when training starts
            self.iteration = 0  # steps of the whole epochs done
            self.current_epoch = 0
            self.final_test_acc = None
            self._stop = None  # the signal that asked the loop to stop, if one did
            self._agreeing = None  # data-parallel: the stop agreement under way
            self._resume_position, self._resume_losses = 0, None
            self._checkpoint_holds = None  # what the checkpoint file holds now, in words
            if resume:
                if checkpoint is None:
                    raise ValueError("Trainer: resume=True needs checkpoint=PATH")
                if os.path.exists(checkpoint):
                    self._restore(checkpoint)
            if self.optimizer.state_of_another(network.params):
                name = type(self.optimizer).__name__
                raise ValueError(
                    f"Trainer: this {name} holds {', '.join(self.optimizer.slots)} from "
                    f"updates of another network's parameters (one optimizer object reused "
                    f"for a new network), which would start this run; give each network a "
                    f"new {name}(...), or optimizer={name!r} with optimizer_param")
            if self.world.size > 1:  # the same network, optimizer and data; rank 0's start
                replicas.prepare(self.world, self.communicator, network, self.optimizer,
                                 {"x_train": self.batches.x, "t_train": self.batches.t,
                                  "x_test": self.x_test, "t_test": self.t_test})

    def _data_parallel_network(self, seed):
        """A data-parallel run's network made exact: its batch norms synchronised
        (``sync_batchnorm``), anything that would make it another run refused by name; and
        rank 0's seed for every rank, for one batch order. Returns the seed."""
        try:
            data_parallel.prepare(self.network, self.world, self.communicator,
                                  self.sync_batchnorm)
        except ValueError as e:
            raise ValueError(f"Trainer: {e}") from None
        if seed is None:  # one batch order for every rank: rank 0's
            seed = self.communicator.broadcast(int(backends.host_rng().integers(2**63)))
        return seed

    # the book's lists, kept by the history
    train_loss_list = property(lambda self: self.history.train_loss_list)
    train_acc_list = property(lambda self: self.history.train_acc_list)
    test_acc_list = property(lambda self: self.history.test_acc_list)

    # --- the loop ----------------------------------------------------------------

    def train(self, epochs=None):
        """Run the remaining steps; returns :attr:`history` (per-epoch lists of floats).

        ``epochs=n`` trains n epochs more than done so far instead (a fraction as
        the constructor's ``epochs`` may be), the planned length set so (a notebook's
        "a few more", or a benchmark's window).
        """
        from tqdm.auto import tqdm

        if epochs is not None:
            number = _as_number(epochs)
            more = int(number * self.iter_per_epoch) if math.isfinite(number) and number > 0 \
                else 0
            if more < 1:
                raise ValueError(f"Trainer.train: epochs must be a number above 0 that makes "
                                 f"at least one step ({self.iter_per_epoch} an epoch), got "
                                 f"{epochs!r}")
            self.max_iter = self.iteration + more
            self.epochs = self.current_epoch + math.ceil(more / self.iter_per_epoch)
        elif self.iteration >= self.max_iter:  # the book's train() would train again
            warnings.warn(f"Trainer.train: the run is complete ({self.iteration} of "
                          f"{self.max_iter} steps, {self.current_epoch} epochs): nothing to "
                          f"train; train(epochs=n) trains n epochs more", stacklevel=2)
        bar = tqdm(total=self.max_iter, initial=self.iteration + self._resume_position,
                   disable=not (self.verbose and _shows_a_bar(tqdm)), unit="it", desc="train",
                   dynamic_ncols=True, leave=True)
        try:
            # data-parallel: BLAS and OpenMP on this process's share of the cores, not all;
            # on the CPU, malloc keeps the step's temporaries for reuse, not faulted in afresh
            # each step (given back when the run ends; see host_allocator_for_training)
            heap = backends.host_allocator_for_training() if self._on_host \
                else contextlib.nullcontext()
            self._stop = None
            with interrupts.noted(self._note_stop), distributed.abort_on_error(self.world), \
                    backends.cpu_share(), heap:
                try:
                    while self.iteration < self.max_iter:
                        if self._stopping():  # came during the last epoch's end
                            self._interrupt(None, 0)
                        self._train_epoch(bar)
                finally:  # every rank completes the agreement it started, whatever ended the run
                    self._finish_agreement()
                with self.backend.scratch():
                    self.final_test_acc = self._accuracy(self.x_test, self.t_test)
                    steps.free_saved(self.network)
        finally:
            bar.close()
        return self.history

    def _train_epoch(self, bar):
        """One epoch's steps (from where an interrupted one stopped), then its end."""
        started = time.perf_counter()
        steps_now = min(self.iter_per_epoch, self.max_iter - self.iteration)
        # a changed learning rate (say) means a recorded step is out of date
        if self._step is None or not self._step.is_current():
            self._step = self._make_step()
            self.step_mode = self._step.mode
            self.graph_seconds = self._step.seconds
        step = self._step
        # each step writes its loss into step.losses, on the device (on JAX, whose arrays
        # are immutable, a new buffer each step: read it from the step, not kept here)
        order = self.batches.start_epoch()
        first = self._resume_position  # > 0 only when resuming mid-epoch
        if first:
            step.losses = xpx.at(step.losses)[:first].set(
                self.backend.asarray(self._resume_losses, step.losses.dtype))
            self._resume_position, self._resume_losses = 0, None
        step.start_epoch(order, first)
        shown, shown_at = first, started
        bar.set_postfix_str(f"epoch {self.current_epoch + 1}/{self.epochs}", refresh=False)
        for i in range(first, steps_now):
            step.run(i)
            if self._stopping():  # Ctrl-C or SIGTERM: this step is done (on every rank)
                bar.update(i + 1 - shown)
                self._interrupt(step.losses, i + 1)
            # look at the clock every 16 steps, read the device only when showing
            if not bar.disable and i % 16 == 15 and \
                    time.perf_counter() - shown_at >= self.refresh_seconds:
                losses = step.losses
                recent = float(backends.array_namespace(losses).mean(losses[shown:i + 1]))
                if not math.isfinite(recent):
                    self._stop_on_bad_loss(losses, shown, i + 1)
                bar.set_postfix_str(f"epoch {self.current_epoch + 1}/{self.epochs}, "
                                    f"loss {recent:.4f}", refresh=False)
                bar.update(i + 1 - shown)
                shown, shown_at = i + 1, time.perf_counter()
        bar.update(steps_now - shown)
        step.sync()  # a compiled step's arrays back into the network, before the epoch's end
        self.graph_seconds = step.seconds
        self.step_mode = step.mode  # (a compiled step that could not be traced ran eagerly)
        self._end_epoch(step.losses, steps_now, started, bar)

    def _make_step(self):
        """The step this run takes (a :class:`framework.steps.Step`): data-parallel in a
        world of several processes, else the one :func:`framework.steps.choose` picks."""
        if self.world.size == 1:
            return steps.choose(self.network, self.optimizer, self.batches, self.graph,
                                train=lambda x, t: self.train_step(x, t))
        no_graph = "; the CUDA-graph step is not used data-parallel" \
            if self.graph and self.backend.graph_runtime() is not None else ""
        return data_parallel.DataParallelStep(
            self.network, self.optimizer, self.batches, self.world, self.communicator,
            f"data-parallel over {self.world.size} processes, {self.communicator.name}: "
            f"{self.communication}{no_graph}", train=lambda x, t: self.train_step(x, t))

    @property
    def step(self):
        """Steps done: whole epochs, plus those of an interrupted epoch a resume continues."""
        return self.iteration + self._resume_position

    # --- the book's names (common/trainer.py), read-only -----------------------------

    @property
    def current_iter(self):
        """The book's name for :attr:`step`: the steps done."""
        return self.step

    @property
    def batch_size(self):
        """The book's name for ``mini_batch_size``: samples a step (the global batch)."""
        return self.batches.batch_size

    @property
    def train_size(self):
        """The training samples."""
        return self.batches.size

    @property
    def x_train(self):
        """The training data, on the network's device (the book's are its host arrays)."""
        return self.batches.x

    @property
    def t_train(self):
        """The training labels, on the network's device."""
        return self.batches.t

    def _note_stop(self, signum):
        self._stop = signum  # the loop looks after the step in flight

    def _interrupt(self, losses, done):
        """Save where the run stands (``done`` steps into the current epoch) and raise
        :class:`TrainingInterrupted`."""
        signum, self._stop = self._stop, None
        if self._step is not None:
            self._step.sync()  # what is saved is what the steps made
        saved = None
        if losses is not None and done:
            values = backends.to_numpy(losses[:done])
            if not all(map(math.isfinite, values.tolist())):
                self._stop_on_bad_loss(losses, 0, done)  # never save a diverged run
        if self.checkpoint:
            if done:  # mid-epoch: the epoch's order, position and losses so far
                self._save(self.checkpoint, position=done, epoch_losses=values)
            saved = self.checkpoint  # at an epoch end it was written already
        raise TrainingInterrupted(signum, self.iteration + done, self.max_iter,
                                  self.current_epoch + (1 if done else 0), saved)

    def gpu_pools(self):
        """Bytes CuPy holds for this run, by pool: ``{"default": ..., "scratch": ...,
        "graph": ...}`` (the default pool holds the data and any eager step's blocks; the
        scratch pool, what evaluations and the eager trial left in use (their cached
        blocks are freed after each); the graph's, its recorded step's); ``{}`` on other
        backends."""
        if self.backend.name != "cupy":
            return {}
        graph = self._step.pool_bytes() if isinstance(self._step, steps.GraphStep) else 0
        return {**self.backend.memory(), "graph": graph}

    def gpu_pool_bytes(self):
        """Bytes CuPy holds for this run: its default pool plus the graph's own (0 on NumPy)."""
        return sum(self.gpu_pools().values())

    def train_step(self, x_batch=None, t_batch=None):
        """One step on a batch already on the device: gradient, update, and the loss.

        The book's ``train_step()`` draws a batch itself and evaluates at each epoch's
        start; here :meth:`train` runs the steps and epochs, and a call without a batch is
        a ``TypeError`` saying so (it was Python's "missing 2 required positional
        arguments").

        The loss is the one ``gradient``'s forward pass computed, returned as
        an array scalar on the device: nothing here waits for the GPU. In a
        data-parallel world ``x_batch`` is the global batch and this rank
        takes its part of the step
        (:meth:`framework.data_parallel.DataParallelStep.train`).
        """
        if x_batch is None or t_batch is None:
            raise TypeError("Trainer.train_step(x_batch, t_batch) takes a batch on the "
                            "device; the book's train_step() drew its own and evaluated at "
                            "each epoch's start, which train() does here: call "
                            "trainer.train() (train(epochs=N) for N more epochs)")
        if self.world.size == 1:
            return steps.train_step(self.network, self.optimizer, x_batch, t_batch)
        return data_parallel.train_step(self.network, self.optimizer, x_batch, t_batch,
                                        self.world, self.communicator)

    def _stopping(self):
        """Whether to stop after this step: Ctrl-C or SIGTERM here, or (data-parallel) on
        any rank, so that every rank stops after the same step. The ranks agree on the
        signal too (SIGTERM over SIGINT where both came), so that every one reports and
        exits alike, whichever rank a scheduler's signal reached.

        Data-parallel, the agreement costs no wait: each step starts a non-blocking
        all-reduce of this rank's signal (an int64), and the next step's check completes
        the one before, so every rank decides on the same round's signals: a signal is
        acted on after the step following the one it came in, on every rank alike."""
        if self.world.size == 1:
            return self._stop is not None
        agreed = self._agreeing.wait() if self._agreeing is not None else 0
        self._agreeing = self.communicator.start_largest(self._stop or 0)
        if agreed:
            self._stop = agreed
            self._finish_agreement()
        # else leave it: a signal that came since counts in the round just started
        return bool(agreed)

    def _finish_agreement(self):
        """Complete the agreement under way (every rank has one started: the same round)."""
        if self._agreeing is not None:
            agreed, self._agreeing = self._agreeing.wait(), None
            if agreed and not self._stop:
                self._stop = agreed

    def _accuracy(self, x, t):
        """``network.accuracy`` (inside the step's evaluation context: compiled on JAX);
        data-parallel: each rank counts its shard, the counts add."""
        with self._step.evaluation() if self._step is not None else contextlib.nullcontext():
            if self.world.size == 1:
                return self.network.accuracy(x, t)
            n = x.shape[0]
            lo, hi = self.world.shard(n)
            mine = (self.network.accuracy(x[lo:hi, ...], t[lo:hi, ...]) * (hi - lo)
                    if hi > lo else 0.0)
        return self.communicator.sum_count(round(mine)) / n

    def _stop_on_bad_loss(self, losses, start, stop):
        if self._step is not None:
            self._step.sync()  # the parameters are looked at below
        values = backends.to_numpy(losses[start:stop])
        bad = next(i for i, v in enumerate(values.tolist()) if not math.isfinite(v))
        step = self.iteration + start + bad + 1
        if not self.checkpoint:
            where = ""
        elif self._checkpoint_holds:
            where = (f"; the last good checkpoint, {self.checkpoint} ({self._checkpoint_holds}), "
                     f"was left as it was")
        else:
            where = (f"; no checkpoint had been written yet ({self.checkpoint} is written at "
                     f"each epoch's end)")
        # The data were checked at the door, so the cause is in the run: tell a
        # divergence (parameters gone non-finite) from an overflow in the forward pass.
        params = self.network.params
        xp = backends.array_namespace(*params.values())
        broken = [key for key, p in self.network.params.items()
                  if not bool(xp.all(xp.isfinite(p)))]
        half = backends.dtype_name(steps.network_dtype(self.network)) == "float16"
        trouble = float16_trouble(self.optimizer) if half else None
        if trouble:
            state = (f"{', '.join(broken)} now hold NaN or infinite values" if broken else
                     "its parameters are finite, but large enough to overflow the forward pass")
            cause = f"the network computes in float16 ({state}): {trouble}"
        elif broken:
            cause = (f"the parameters diverged ({', '.join(broken)} now hold NaN or infinite "
                     f"values): a smaller learning rate (now {self.optimizer.lr}) usually helps")
        else:
            cause = ("the parameters are still finite, so the forward pass overflowed: the "
                     "inputs' scale or the initial weights are too large for this network")
        if half and not trouble:
            cause += (" (in float16, whose largest number is 65504: float32, the network's "
                      "default dtype, has room where float16 has none)")
        raise FloatingPointError(
            f"Trainer: the loss became {values[bad]} at step {step} of {self.max_iter} "
            f"(epoch {self.current_epoch + 1}); training stopped{where}. Cause: {cause}.")

    def _evaluate(self):
        n = self.evaluate_sample_num_per_epoch
        x, t = self.batches.x, self.batches.t
        x_test, t_test = self.x_test, self.t_test
        if n is not None:
            m, m_test = min(n, x.shape[0]), min(n, x_test.shape[0])  # no slice past an axis
            x, t, x_test, t_test = x[:m, ...], t[:m, ...], x_test[:m_test, ...], t_test[:m_test, ...]
        return self._accuracy(x, t), self._accuracy(x_test, t_test)

    def _end_epoch(self, losses, count, started, bar):
        values = backends.to_numpy(losses[:count])  # the one read of this epoch's losses
        floats = values.tolist()
        if not all(map(math.isfinite, floats)):
            self._stop_on_bad_loss(losses, 0, count)
        self.iteration += count
        self.current_epoch += 1
        with self.backend.scratch():  # the evaluation's blocks go back to the device after it
            train_acc, test_acc = self._evaluate()
            steps.free_saved(self.network)
        seconds = time.perf_counter() - started
        record = {"epoch": self.current_epoch, "iteration": self.iteration,
                  "loss": float(values.mean()), "train_acc": train_acc, "test_acc": test_acc,
                  "seconds": seconds}
        self.history.add_epoch(floats, record)
        if self.verbose:
            bar.set_postfix_str(f"epoch {self.current_epoch}/{self.epochs}, "
                                f"loss {record['loss']:.4f}", refresh=False)
            bar.write(f"epoch {self.current_epoch}/{self.epochs}  loss {record['loss']:.4f}  "
                      f"train acc {train_acc:.4f}  test acc {test_acc:.4f}  ({seconds:.1f} s)")
        if self.check_replicas and self.world.size > 1:
            differ = replicas.differences(self.communicator, self.network)
            if differ:
                raise RuntimeError(f"Trainer: after epoch {self.current_epoch} the processes "
                                   f"hold different parameters or layer state "
                                   f"({', '.join(differ)}): the data-parallel step went wrong")
        if self.checkpoint:
            self._save(self.checkpoint)  # before the callbacks, which may read it
        settings = self.optimizer.settings()
        try:
            for callback in self.callbacks:
                callback(self, record)
        finally:  # (a callback that stops the run too)
            if self.checkpoint and self.optimizer.settings() != settings:
                # a schedule changed the rates: the file holds the run as it goes on
                self._save(self.checkpoint)

    # --- checkpoints: framework/trainer_state.py --------------------------------------

    def _save(self, path, position=0, epoch_losses=None):
        trainer_state.save(self, path, position, epoch_losses)
        self._checkpoint_holds = f"after epoch {self.current_epoch}" + \
            (f" and {position} steps" if position else "")

    def _restore(self, path):
        position, losses = trainer_state.restore(self, path)
        self._checkpoint_holds = "the run as it was resumed"
        self.step_mode, self._step = None, None  # new state arrays: record again
        self._resume_position, self._resume_losses = position, losses
