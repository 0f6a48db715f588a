"""The steps the Trainer runs on its own: an eager step, the same step replayed
as a CUDA graph, and the choice between them and the compiled step of
:mod:`framework.jit_step` (the protocol is :mod:`framework.step`'s, the data-parallel step
:mod:`framework.data_parallel`'s).

Every step is a :class:`Step`: :attr:`~Step.mode` says which runs and why,
:attr:`~Step.losses` is the device buffer of an epoch's losses, ``start_epoch(order,
first)`` takes the epoch's sample order (and where an interrupted epoch stopped),
``run(i)`` does step ``i`` of the epoch and writes ``losses[i]``, ``is_current()`` says
whether the step may still run (a recorded graph bakes in the optimizer's numbers), and
:attr:`~Step.seconds` is the time spent making it (recording a graph: kernel builds
included). :func:`choose` makes the one a process on its own asks for. Nothing in a
step waits for the device.
"""

import time

import backends
from framework.jit_step import JitStep
from framework.step import (  # noqa: F401 (step_loss, network_dtype: public here too)
    Step, baked_in, network_dtype, step_loss, train_step)


class EagerStep(Step):
    """The step as the book writes it, ``train(x, t)`` on each batch, launched one by one
    (``train``: :func:`train_step` on the network and optimizer by default)."""

    def __init__(self, network, optimizer, batches, reason, train=None):
        self.network, self.optimizer, self.batches = network, optimizer, batches
        self.train = train or (lambda x, t: train_step(network, optimizer, x, t))
        self.mode = f"eager ({reason})"
        self.losses = batches.backend.full(len(batches), 0, network_dtype(network))
        self._order = None

    def start_epoch(self, order, first=0):
        self._order = order

    def run(self, i):
        loss = self.train(*self.batches.batch(self._order, i))
        # in place; on JAX, whose arrays are immutable, a new buffer each step
        self.losses = backends.ops_for(self.losses).set_at(self.losses, i, loss)


class GraphStep(Step):
    """The eager step's launches recorded once as a CUDA graph and replayed, one call a step.

    On CuPy and on PyTorch's CUDA tensors alike: the backend's ``graph_runtime()``
    (:mod:`backends.cuda.graph`, :mod:`backends.torch.graph`) records and replays, and its
    ``Feed`` gathers the batch and records the loss on the device. The recorded step is
    the eager one, run by the same layers and optimizer. Recording runs the step twice (a
    warm-up and the capture) and then puts back the parameters, the layers'
    state (batch norm's running averages, dropout's counters, updated in
    place on the device and so recorded with the step) and the optimizer's
    state (its ``device_state()``), so building a graph changes nothing.
    The optimizer's ``hyperparameters``, weight decay and the layers'
    settings are baked in (:func:`framework.step.baked_in`): :meth:`is_current`
    sees one changed (a learning-rate schedule) and the Trainer records
    again. A short last batch runs eagerly.
    """

    mode = "cuda-graph"

    def __init__(self, network, optimizer, batches, own_gemm=True, train=None):
        graph = batches.backend.graph_runtime()
        if graph is None:
            raise ValueError(f"CUDA graph step: the {batches.backend.name} backend has no "
                             f"CUDA graphs on {batches.backend.device}")
        self._graph_module = graph  # CuPy's (backends/cuda/graph.py) or PyTorch's
        self.network, self.optimizer, self.batches = network, optimizer, batches
        self.train = train or (lambda x, t: train_step(network, optimizer, x, t))
        self.own_gemm = own_gemm  # False: try cuBLAS under capture (scripts/graph_probe.py)
        self.ops = backends.ops_for(batches.x)  # the wing's: the step records on them
        self.feed = graph.Feed(batches.x, batches.t, batches.batch_size, len(batches),
                               batches.size, network_dtype(network),
                               getattr(self.ops, "kernels", None))
        self.losses = self.feed.losses
        self.replayed = batches.full_batches
        self.graph = None
        self._recorded = None
        self._order = None

    def _body(self):
        """The step as issued eagerly: gather, ``train`` (gradient and update: the Trainer's
        ``train_step``, a subclass's own included, as the eager step runs it), record."""
        self.feed.gather()
        self.feed.record(self.train(self.feed.x_batch, self.feed.t_batch))

    # --- what recording must leave as it found -------------------------------------------

    def _state(self):
        state = getattr(self.network, "state", None)
        return state() if state else {}

    def _fingerprint(self):
        """The numbers baked into the recording (the optimizer's, weight decay's, the layers'
        settings: :func:`framework.step.baked_in`) and the arrays it was recorded with."""
        numbers = (tuple((name, getattr(self.optimizer, name))
                         for name in self.optimizer.hyperparameters), baked_in(self.network))
        arrays = (list(self.network.params.values()) + list(self._state().values())
                  + list(self.optimizer.device_state()))
        return numbers, arrays

    def is_current(self):
        """False once a replay would be wrong: a hyperparameter of the optimizer or a number
        of the network's it baked in changed since recording, or a parameter or state array
        was replaced."""
        if self._recorded is None:
            return False
        numbers, arrays = self._fingerprint()
        old_numbers, old_arrays = self._recorded
        return numbers == old_numbers and len(arrays) == len(old_arrays) and \
            all(a is b for a, b in zip(arrays, old_arrays))

    def _snapshot(self):
        arrays = list(self.network.params.values()) + list(self._state().values())
        state = [(a, backends.copy(a)) for a in self.optimizer.device_state()]
        return [backends.copy(a) for a in arrays], state, self.optimizer.iter

    def _restore(self, snapshot):
        arrays, state, it = snapshot
        for a, saved in zip(list(self.network.params.values()) + list(self._state().values()),
                            arrays):
            a[...] = saved
        for a in self.optimizer.device_state():
            saved = next((copy for held, copy in state if held is a), None)
            if saved is None:
                a[...] = 0  # created by the warm-up: optimizers start their state at zero
            else:
                a[...] = saved
        self.optimizer.iter = it

    def record(self):
        """Record the step; parameters and optimizer state are left as they were."""
        snapshot = self._snapshot()
        try:
            self.graph = self._graph_module.capture(self._body, self.ops, self.own_gemm)
        finally:
            self._restore(snapshot)
            self.feed.counter[...] = 0
        self._recorded = self._fingerprint()
        return self

    def time_against_eager(self, repeats=5):
        """Seconds a step takes replayed and issued eagerly (cuBLAS, fused kernels), as
        ``(graph, eager)``, each the best of ``repeats`` after a warm-up; everything the
        steps changed is put back. ``choose`` keeps the faster: for large matrices cuBLAS
        can beat the graph's own GEMMs by more than the launches cost."""
        sync = self._graph_module.synchronize
        repeats = max(1, min(repeats, len(self.batches) - 1))
        snapshot = self._snapshot()
        times = {"graph": [], "eager": []}
        try:
            for mode in ("graph", "eager"):
                self.feed.counter[...] = 0
                for i in range(repeats + 1):
                    sync()
                    start = time.perf_counter()
                    self.graph.launch() if mode == "graph" else self._body()
                    sync()
                    if i:  # the first is a warm-up (kernel builds, cuBLAS handles)
                        times[mode].append(time.perf_counter() - start)
        finally:
            sync()
            self._restore(snapshot)
            self.feed.counter[...] = 0
        return min(times["graph"]), min(times["eager"])

    # --- the step interface ---------------------------------------------------------

    def start_epoch(self, order, first=0):
        self._order = order
        self.feed.start_epoch(order, first)

    def run(self, i):
        if i < self.replayed:
            self.graph.launch()
        else:  # a short last batch
            self.losses[i] = self.train(*self.batches.batch(self._order, i))

    def pool_bytes(self):
        """Bytes held by the graph's own memory pool (its temporaries)."""
        return 0 if self.graph is None else self.graph.pool_bytes()


def free_saved(network):
    """``network.free_saved()`` where the network has it (a user's own may not)."""
    free = getattr(network, "free_saved", None)
    if free is not None:
        free()


def not_recordable(optimizer, batches, graph="auto"):
    """Why the step will not be a CUDA graph, as far as it is known before any recording
    (the backend, the switch, the optimizer, the labels), or None where it may be."""
    backend = batches.backend
    if graph is False:
        return "graph=False"
    if backend.graph_runtime() is None:
        return f"the {backend.name} backend has no CUDA graphs on {backend.device}"
    if graph == "auto" and not backends.settings().cuda_graph:
        return "XPNET_CUDA_GRAPH=0"
    if not optimizer.capturable:
        return f"{type(optimizer).__name__} cannot be replayed: see its capturable"
    if batches.t.ndim != 1:
        return "the graph step needs integer labels"
    return None


def refuse_unrecordable(optimizer, batches):
    """For ``graph=True``: ``ValueError`` where :func:`not_recordable` already knows the step
    cannot be a CUDA graph (the Trainer asks when it is made, before its progress bar is
    drawn); nothing where it may be, or is compiled instead (JAX)."""
    if batches.backend.step_compiler() is None:
        _refuse(not_recordable(optimizer, batches, True))


def _refuse(reason):
    """``graph=True``'s error, where there is a ``reason`` the step is not a CUDA graph."""
    if reason is not None:
        raise ValueError(f"Trainer: graph=True, but the step cannot be a CUDA graph: {reason}")


def choose(network, optimizer, batches, graph="auto", train=None):
    """The step to run: a recorded :class:`GraphStep` where ``graph`` allows it, the step can
    be recorded and (for ``"auto"``) a few timed steps show it faster, else an
    :class:`EagerStep` whose ``mode`` says why. ``graph=True`` raises instead. ``train(x,
    t)`` is every step's body, run eagerly, recorded or compiled (default
    :func:`train_step`; the Trainer passes its ``train_step``, a subclass's included)."""
    backend = batches.backend
    if graph is not False and backend.step_compiler() is not None:  # JAX: compiled by XLA
        try:
            return JitStep(network, optimizer, batches, train=train,
                           fall_back=graph is not True)
        except ValueError as e:
            if graph is True:
                raise ValueError(f"Trainer: graph=True, but the step cannot be compiled: "
                                 f"{e}") from None
            return EagerStep(network, optimizer, batches, f"not compiled: {e}", train)
    reason = not_recordable(optimizer, batches, graph)
    if reason is None:
        started = time.perf_counter()
        try:
            step = GraphStep(network, optimizer, batches, train=train)
            with backend.scratch():  # the recording's copies of the parameters: handed back
                step.record()
            step.seconds = time.perf_counter() - started  # the recording, kernel builds too
        except Exception as e:
            if graph is True:
                raise
            reason = f"CUDA graph capture failed: {type(e).__name__}: {e}"
        else:
            if graph == "auto" and len(batches) > 1:
                # the eager trial's blocks (its activations, the layers keep the last
                # ones) go back to the device after it, not into the user's pool
                with backend.scratch():
                    graph_s, eager_s = step.time_against_eager()
                    free_saved(network)
                if eager_s < graph_s:
                    return EagerStep(network, optimizer, batches,
                                     f"faster than the CUDA graph here: {1e3 * eager_s:.3f} "
                                     f"against {1e3 * graph_s:.3f} ms a step", train)
            return step
    if graph is True:
        _refuse(reason)
    return EagerStep(network, optimizer, batches, reason, train)
