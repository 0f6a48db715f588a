"""The training step traced once and compiled by XLA (JAX): the compiled counterpart of
the CUDA-graph step.

On JAX, whose arrays are immutable, a step is a function from the arrays it reads to the
arrays it makes. :class:`JitStep` runs the eager step's own code (the network's
``gradient``, the optimizer's ``update``: :func:`framework.step.train_step`) once on
JAX's tracers, as one pure function of

    (parameters, layer state, optimizer state, hyperparameters, the epoch's losses,
     the training data, the epoch's order, the step's index)

and has ``jax.jit`` compile it, with the parameters', state's and losses' buffers
donated (XLA updates them in place). Each step is then one call. The numbers that
change from step to step are inputs, never constants of the compiled step: the step
index (the batch is gathered inside, from the epoch's order), Adam's step count,
dropout's counters, and the optimizer's hyperparameters (so a learning-rate schedule
needs no new compilation). What the trace does bake in (a dropout ratio, batch norm's
momentum, weight decay: the layers' plain-number attributes) is fingerprinted, and a
changed one compiles the step anew, as the graph step is recorded anew.

Between steps the arrays live here; :meth:`JitStep.sync` puts them back into the network
and the optimizer (the Trainer calls it before anything reads them: the epoch's end, an
interrupt), and :meth:`JitStep.start_epoch` takes them from there again, so what changed
between epochs (a loaded checkpoint, a new learning rate) is what the next epoch runs on.
A short last batch runs eagerly, as the graph step's does.

A step that cannot be traced (a layer of the user's own that reads a value in Python,
``float(x.sum())``, or indexes by a mask) is found at the first call, before anything
ran: with ``graph="auto"`` the step runs eagerly from there on, and :attr:`mode` says
why; with ``graph=True`` it is a ``ValueError`` saying why. An evaluation that cannot be
traced (a layer that reads a value in inference only) counts eagerly.

The Trainer's evaluations run inside :meth:`JitStep.evaluation`, which lends the network
a compiled ``count_correct`` (the network's own, traced as a pure function of the
parameters, layer state and batch): one XLA call a batch, where eagerly JAX compiles
each operation for each new shape and dispatches it alone.
"""

import contextlib
import time

from framework import optimizers
from framework.step import Step, baked_in, network_dtype, train_step


class JitStep(Step):
    """The step compiled by XLA through ``jax.jit`` (see the module)."""

    def __init__(self, network, optimizer, batches, train=None, fall_back=True):
        backend = batches.backend
        compiler = backend.step_compiler()
        if compiler is None:
            raise ValueError(f"the {backend.name} backend compiles no steps")
        if not getattr(network.params, "reaches_layers", False):
            raise ValueError(f"{type(network).__name__}'s params are a plain dict: a new "
                             f"array put in it would not reach its layers (a "
                             f"models.base.Network's params pass each one on)")
        if not getattr(optimizer, "traceable", True):
            raise ValueError(f"{optimizer!r} runs as written: the numbers it computes on the "
                             f"host (the book's Adam's lr_t, from its iter) would be traced "
                             f"once")
        if not hasattr(network, "state"):
            raise ValueError(f"{type(network).__name__} has no state(): its layers' buffers "
                             f"cannot be threaded through the compiled step")
        self.network, self.optimizer, self.batches = network, optimizer, batches
        self.train = train or (lambda x, t: train_step(network, optimizer, x, t))
        self._compiler = compiler
        self.dtype = network_dtype(network)
        self.losses = backend.full(len(batches), 0, self.dtype)
        self.replayed = batches.full_batches
        self.mode = "jit"
        self.fall_back = fall_back  # eager where the step cannot be traced (graph="auto")
        self._eager = False  # True once it fell back
        self._order = None
        self._carry = None  # (params, state, optimizer arrays) between steps
        self._hyper = None  # ((name, value) ..., their arrays)
        self._fingerprint = self._static()
        self._compiled = compiler.jit(self._pure, donate=(0, 1, 2, 4))
        self._count = compiler.jit(self._count_pure, donate=())  # traced on first use
        self._count_traceable = True  # False once the evaluation could not be traced
        self._compiled_once = False
        self._synced = True
        self.seconds = 0.0  # the first call traces and compiles: its time

    # --- what is traced --------------------------------------------------------------

    def _static(self):
        net = self.network
        return (type(self.optimizer), tuple(self.optimizer.hyperparameters),
                tuple(net.params), baked_in(net))

    def _read(self):
        """The network's and optimizer's arrays, as the pure function takes them."""
        net, opt = self.network, self.optimizer
        opt.prepare(net.params)  # its state made (zeros, Adam's count) before the trace
        return dict(net.params), dict(net.state()), opt.arrays()

    def _put(self, params, state, arrays):
        """Put arrays (concrete, or the trace's) into the network and optimizer."""
        net = self.network
        for key, value in params.items():
            net.params[key] = value
        for key, value in state.items():
            layer, attr = key.split("/", 1)
            setattr(net.layers[layer], attr, value)
        self.optimizer.put_arrays(arrays)

    def _pure(self, params, state, arrays, hyper, losses, x, t, order, i):
        """The step on the trace's arrays (called by ``jax.jit`` when it traces): the
        objects are lent the tracers, and get their own arrays back after."""
        net, opt = self.network, self.optimizer
        kept = (dict(net.params), dict(net.state()), opt.arrays())
        numbers = {name: getattr(opt, name) for name in hyper}
        last_loss = getattr(net, "last_loss", None)
        layers = self._layers_as_they_are()
        self._put(params, state, arrays)
        try:
            for name, value in hyper.items():  # traced: a new lr reuses the compiled step
                optimizers.lend(opt, name, value)
            xb, tb = self._compiler.gather(x, t, order, i, self.batches.batch_size)
            loss = self.train(xb, tb)  # the Trainer's train_step, as the graph step records it
            out = (dict(net.params), dict(net.state()), opt.arrays())
        finally:  # no tracer left behind in the objects
            for name, value in numbers.items():
                optimizers.lend(opt, name, value)
            self._put(*kept)
            net.last_loss = last_loss
            self._restore_layers(layers)
            net.free_saved()  # and what the layers kept before it goes too
        return out + (self._compiler.put(losses, i, loss),)

    def _count_pure(self, params, state, x, t):
        """The network's ``count_correct`` on the trace's arrays (see :meth:`evaluation`)."""
        net = self.network
        kept = (dict(net.params), dict(net.state()))
        layers = self._layers_as_they_are()
        self._put(params, state, {})
        try:
            return type(net).count_correct(net, x, t)  # the class's: not the one lent
        finally:
            self._put(*kept, {})
            self._restore_layers(layers)
            net.free_saved()  # and what the layers kept before it goes too

    def _layers_as_they_are(self):
        """Each layer's attributes before a trace, for :meth:`_restore_layers`."""
        net = self.network
        return [(layer, dict(vars(layer)))
                for layer in (*net.layers.values(), net.last_layer)]

    @staticmethod
    def _restore_layers(layers):
        """The layers' attributes as they were before the trace: what a pass kept of it (its
        inputs, masks and losses, tracers all) goes, a layer of the user's own included,
        whose ``saved`` names none of what it keeps."""
        for layer, attributes in layers:
            vars(layer).clear()
            vars(layer).update(attributes)

    # --- the step interface ---------------------------------------------------------

    @contextlib.contextmanager
    def evaluation(self):
        """Lend the network a compiled ``count_correct`` (its own, traced once for each
        batch shape) for the evaluations inside; the network's ``accuracy`` adds the counts
        up as always. A network without ``count_correct`` evaluates eagerly."""
        net = self.network
        if self._eager or not callable(getattr(type(net), "count_correct", None)):
            yield
            return
        if not self._synced:
            self.sync()
        params, state = dict(net.params), dict(net.state())

        def count_correct(x, t):
            if self._count_traceable:
                try:
                    return self._count(params, state, x, t)
                except self._compiler.UNTRACEABLE:  # (only a trace raises these: nothing ran)
                    self._count_traceable = False  # a layer that reads a value in inference
            return type(net).count_correct(net, x, t)  # eagerly, as it cannot be traced
        net.count_correct = count_correct
        try:
            yield
        finally:
            del net.count_correct

    def is_current(self):
        """False when something the trace baked in changed (a layer's number, the optimizer's
        kind, weight decay): the Trainer then makes the step anew."""
        return self._static() == self._fingerprint

    def start_epoch(self, order, first=0):
        if not self._synced:  # driven by hand, without sync() at the last epoch's end
            self.sync()
        self._order = order
        self._carry = None if self._eager else self._read()

    def _hyperparameters(self):
        values = tuple((name, getattr(self.optimizer, name))
                       for name in self.optimizer.hyperparameters)
        if self._hyper is None or self._hyper[0] != values:
            backend = self.batches.backend
            self._hyper = (values, {name: backend.full((), value, self.dtype)
                                    for name, value in values})
        return self._hyper[1]

    def run(self, i):
        if self._eager:  # fell back: the network's own arrays, as the eager step runs them
            loss = self.train(*self.batches.batch(self._order, i))
            self.losses = self._compiler.put(self.losses, self._compiler.index(i), loss)
            return
        if i >= self.replayed:  # a short last batch, eagerly
            self.sync()
            loss = self.train(*self.batches.batch(self._order, i))
            self.losses = self._compiler.put(self.losses, self._compiler.index(i), loss)
            self._carry = self._read()
            return
        first = not self._compiled_once
        started = time.perf_counter()
        params, state, arrays = self._carry
        try:
            params, state, arrays, self.losses = self._compiled(
                params, state, arrays, self._hyperparameters(), self.losses, self.batches.x,
                self.batches.t, self._order, self._compiler.index(i))
        except self._compiler.UNTRACEABLE as e:
            if not first:  # only a trace raises these, and only the first call traces
                raise
            self._untraceable(e)  # nothing ran: nothing was donated
            return self.run(i)
        self._carry = (params, state, arrays)
        self._synced = False
        if first:  # the first call traced and compiled (the step itself runs on, queued)
            self.seconds, self._compiled_once = time.perf_counter() - started, True

    def _untraceable(self, error):
        """The first call could not trace the step: run eagerly from here, or (``graph=True``)
        say why not."""
        why = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
        if not self.fall_back:
            raise ValueError(f"Trainer: graph=True, but the step cannot be compiled: it asks "
                             f"for a traced value in Python ({why}); graph='auto' or False "
                             f"runs it eagerly") from error
        self.mode = f"eager (the step cannot be compiled: {why})"
        self._eager, self._carry, self._synced = True, None, True

    def sync(self):
        """Put the step's current arrays back into the network and the optimizer (the
        ones they held were given to XLA: donated)."""
        if self._carry is not None:
            self._put(*self._carry)
        self._synced = True
