"""framework/steps.py's GraphStep and the Trainer's choice of step, on the CPU: the step's
own bookkeeping (what recording puts back, when a recording is stale, the epoch's counter, a
short last batch, recording again, the reasons for not recording) with a runtime whose
replay runs the step's body again, on NumPy (with a feed written here, as CuPy's and
PyTorch's gather on the device) and on PyTorch's CPU tensors (with its own Feed). The real
capture, and a stale constant inside a real graph, are tests/framework/test_steps.py's, on
a card."""

import numpy as np
import pytest

import backends
from framework.data import DeviceBatches
from framework.testing.plugin import unusable
from tests.conftest import to_host


class NumPyFeed:
    """:class:`backends.torch.graph.Feed`'s interface on NumPy arrays: the batch gathered at
    a counter from the epoch's order into fixed buffers, each loss recorded at the counter."""

    def __init__(self, x, t, batch, steps_per_epoch, size, loss_dtype, kernels=None):
        self.x, self.t, self.batch = x, t, batch
        self.order = np.zeros(max(size, steps_per_epoch * batch), dtype=np.int64)
        self.counter = np.zeros(1, dtype=np.int64)
        self.losses = np.zeros(steps_per_epoch, dtype=loss_dtype)
        self.x_batch = np.empty((batch,) + x.shape[1:], dtype=x.dtype)
        self.t_batch = np.empty(batch, dtype=t.dtype)
        self._offsets = np.arange(batch)

    def gather(self):
        index = self.order[self.counter[0] * self.batch + self._offsets]
        np.take(self.x, index, axis=0, out=self.x_batch)
        np.take(self.t, index, axis=0, out=self.t_batch)

    def record(self, loss):
        self.losses[self.counter[0]] = loss
        self.counter += 1

    def start_epoch(self, order, first=0):
        self.order[:order.shape[0]] = order
        self.counter[...] = first


@pytest.fixture(params=["numpy", "torch"])
def replay(request):
    """The backend under test, with :class:`Replaying`'s Feed for it."""
    name = request.param
    if name not in backends.available():
        pytest.skip(unusable(name, backends.backend_class(name).usable()[1]))
    if name == "torch":
        from backends.torch.graph import Feed
    else:
        Feed = NumPyFeed
    Replaying.Feed = staticmethod(Feed)
    try:
        with backends.using(name, device="cpu") as chosen:
            yield chosen
    finally:
        Replaying.Feed = None


class Replaying:
    """A graph runtime for the CPU: its "recording" runs the step's body once (the warm-up a
    card's capture runs too) and its "replay" runs the body again. So
    :class:`framework.steps.GraphStep`'s own bookkeeping is tested here (recording puts back
    what the warm-up changed, staleness, the epoch's counter, a short last batch); the
    real capture runs on a card (tests/framework/test_steps.py)."""

    Feed = None  # the fixture's: NumPyFeed, or PyTorch's own (backends/torch/graph.py)

    class Graph:
        def __init__(self, body):
            self.launch = body

        def pool_bytes(self):
            return 0

    @classmethod
    def capture(cls, body, ops, own_gemm=True):
        body()  # the warm-up; capturing itself runs nothing
        return cls.Graph(body)

    @staticmethod
    def synchronize():
        pass


def deep_float64(seed):
    from models import MultiLayerNetExtend
    return MultiLayerNetExtend(12, [10, 10], 3, use_batchnorm=True, use_dropout=True,
                               dropout_ration=0.2, weight_decay_lambda=0.01, seed=seed,
                               dtype="float64")


def test_the_graph_steps_bookkeeping_with_a_replaying_runtime(replay, monkeypatch):
    """Recording changes nothing (Adam's state made by the warm-up is put back to zero, its
    step count too; recorded again later, the state as it stood); three epochs of replays
    (a short last batch eagerly each) give the eager step's losses, parameters and layer
    state bit for bit in float64; a changed learning rate or a replaced parameter makes
    the recording stale."""
    from framework.optimizers import Adam
    from framework.steps import GraphStep, train_step
    rng = np.random.default_rng(0)
    x, t = rng.random((95, 12)), rng.integers(0, 3, 95)  # 10 batches of 10, the last of 5
    replayed, eager = deep_float64(1), deep_float64(1)
    opt_r, opt_e = Adam(lr=0.01), Adam(lr=0.01)
    batches_r = DeviceBatches(x, t, 10, seed=4, backend=replay, dtype="float64")
    batches_e = DeviceBatches(x, t, 10, seed=4, backend=replay, dtype="float64")
    monkeypatch.setattr(batches_r.backend, "graph_runtime", lambda: Replaying)
    step = GraphStep(replayed, opt_r, batches_r)
    before = {k: to_host(v).copy() for k, v in {**replayed.params, **replayed.state()}.items()}
    step.record()
    for key, value in {**replayed.params, **replayed.state()}.items():
        np.testing.assert_array_equal(to_host(value), before[key], err_msg=key)
    assert opt_r.iter == 0 and all(float(to_host(a).std()) == 0 == float(to_host(a).max())
                                   for a in opt_r.device_state() if a.ndim)
    assert step.is_current() and step.replayed == 9
    losses_r, losses_e = [], []

    def epoch():
        order_r, order_e = batches_r.start_epoch(), batches_e.start_epoch()
        step.start_epoch(order_r)
        for i in range(len(batches_r)):
            step.run(i)
            losses_e.append(to_host(train_step(eager, opt_e, *batches_e.batch(order_e, i))))
        losses_r.extend(to_host(step.losses))

    epoch()
    epoch()
    opt_r.lr = 0.02
    assert not step.is_current()
    opt_r.lr = 0.01
    assert step.is_current()
    # a schedule's change: recorded again over Adam's state as it stands (its moments and
    # step count copied and put back, not zeroed), and the third epoch goes on alike
    opt_r.lr = opt_e.lr = 0.005
    step.record()
    assert step.is_current() and opt_r.iter == opt_e.iter == 20
    epoch()
    np.testing.assert_array_equal(np.array(losses_r), np.array(losses_e, dtype=np.float64))
    for key, value in eager.params.items():
        np.testing.assert_array_equal(to_host(replayed.params[key]), to_host(value), err_msg=key)
    for key, value in eager.state().items():
        np.testing.assert_array_equal(to_host(replayed.state()[key]), to_host(value), err_msg=key)
    replayed.params["W1"] = replayed.params["W1"] * 1  # another array in its place
    assert not step.is_current()
    step.record()
    more = opt_r.device_state  # an array of state more than was recorded
    opt_r.device_state = lambda: list(more()) + [np.zeros(1)]
    assert not step.is_current()


def test_recording_puts_back_an_optimizers_own_count(replay, monkeypatch):
    """An optimizer of the user's own that counts its updates on the host (the book's Adam
    does, ``self.iter += 1``) has the count the run had after recording, though the
    warm-up and the capture ran its update: a checkpoint records the run's steps."""
    from framework.optimizers import SGD
    from framework.steps import GraphStep

    class CountingSGD(SGD):
        def update(self, params, grads):
            self.iter += 1
            super().update(params, grads)
    rng = np.random.default_rng(0)
    batches = DeviceBatches(rng.random((40, 12)), rng.integers(0, 3, 40), 10, seed=4,
                            backend=replay, dtype="float64")
    monkeypatch.setattr(batches.backend, "graph_runtime", lambda: Replaying)
    opt = CountingSGD(lr=0.1)
    opt.iter = 7
    GraphStep(deep_float64(1), opt, batches).record()
    assert opt.iter == 7


def trained(make_net, graph, callbacks=(), t_of=lambda t: t, **options):
    """A three-epoch float64 run of the Trainer on the current backend."""
    from framework.trainer import Trainer
    rng = np.random.default_rng(2)
    x, t = rng.random((95, 12)), rng.integers(0, 3, 95)
    options = {"optimizer": "Adam", "optimizer_param": {"lr": 0.01}, **options}
    if not isinstance(options["optimizer"], str):  # one built already: its own settings
        del options["optimizer_param"]
    trainer = Trainer(make_net(), x, t_of(t), x[:40], t_of(t[:40]), epochs=3,
                      mini_batch_size=10, verbose=False, seed=5, graph=graph,
                      callbacks=list(callbacks), **options)
    trainer.train()
    return trainer


@pytest.mark.parametrize("change, records", [("nothing", 1), ("learning rate", 3),
                                             ("dropout ratio", 2), ("weight decay", 2)])
def test_the_trainer_records_again_when_a_baked_in_number_changes(replay, monkeypatch,
                                                                  change, records):
    """What a card's recording holds as constants, changed at an epoch's end, makes the
    Trainer record again before the next epoch (here counted: a replay that runs the body
    again would not show a stale constant), and the run equals the eager one bit for bit."""
    captures = []

    class Counting(Replaying):
        @classmethod
        def capture(cls, body, ops, own_gemm=True):
            captures.append(1)
            return super().capture(body, ops, own_gemm)

    def change_it(trainer, record):
        if change == "learning rate":
            trainer.optimizer.lr *= 0.5
        elif change == "dropout ratio":
            trainer.network.layers["Dropout1"].dropout_ratio = 0.5
        elif change == "weight decay":
            trainer.network.weight_decay_lambda = 0.5
    monkeypatch.setattr(type(replay), "graph_runtime", lambda self: Counting)
    graph = trained(lambda: deep_float64(3), True, [change_it])
    eager = trained(lambda: deep_float64(3), False, [change_it])
    assert graph.step_mode == "cuda-graph" and eager.step_mode == "eager (graph=False)"
    assert len(captures) == records
    assert graph.train_loss_list == eager.train_loss_list
    for key, value in eager.network.params.items():
        np.testing.assert_array_equal(to_host(graph.network.params[key]), to_host(value))


def test_the_trainer_says_why_a_step_is_not_recorded(replay, monkeypatch):
    """The choice's reasons where a runtime is there: one-hot labels, the switch off, a
    capture that fails ('auto' runs eagerly and says so; True raises)."""
    class Failing(Replaying):
        @classmethod
        def capture(cls, body, ops, own_gemm=True):
            raise RuntimeError("the capture met an operation it cannot record")
    monkeypatch.setattr(type(replay), "graph_runtime", lambda self: Replaying)
    one_hot = lambda t: np.eye(3)[t]  # noqa: E731
    assert trained(lambda: deep_float64(3), "auto", t_of=one_hot).step_mode == \
        "eager (the graph step needs integer labels)"
    with pytest.raises(ValueError, match="graph=True, but the step cannot be a CUDA graph: the "
                                         "graph step needs integer labels"):
        trained(lambda: deep_float64(3), True, t_of=one_hot)
    with backends.configured(cuda_graph=False):
        assert trained(lambda: deep_float64(3), "auto").step_mode == "eager (XPNET_CUDA_GRAPH=0)"
        assert trained(lambda: deep_float64(3), True).step_mode == "cuda-graph"
    from framework.optimizers import SGD

    class Hosted(SGD):  # an optimizer of the user's own that reads a host value a step
        capturable = False
    assert trained(lambda: deep_float64(3), "auto", optimizer=Hosted(lr=0.01)).step_mode == \
        "eager (Hosted cannot be replayed: see its capturable)"
    monkeypatch.setattr(type(replay), "graph_runtime", lambda self: Failing)
    assert trained(lambda: deep_float64(3), "auto").step_mode == (
        "eager (CUDA graph capture failed: RuntimeError: the capture met an operation it "
        "cannot record)")
    with pytest.raises(RuntimeError, match="cannot record"):
        trained(lambda: deep_float64(3), True)


@pytest.mark.parametrize("graph_ms, eager_ms, mode", [
    (2.0, 1.0, "eager (faster than the CUDA graph here: 1.000 against 2.000 ms a step)"),
    (1.0, 2.0, "cuda-graph")])
def test_auto_keeps_the_faster_of_the_recorded_and_the_eager_step(replay, monkeypatch,
                                                                  graph_ms, eager_ms, mode):
    """``graph="auto"`` times both and keeps the faster (cuBLAS may beat the graph's own
    products), saying so where that is the eager step; ``graph=True`` never times."""
    from framework.steps import GraphStep
    monkeypatch.setattr(type(replay), "graph_runtime", lambda self: Replaying)
    monkeypatch.setattr(GraphStep, "time_against_eager",
                        lambda self, repeats=5: (graph_ms / 1e3, eager_ms / 1e3))
    assert trained(lambda: deep_float64(3), "auto").step_mode == mode
    assert trained(lambda: deep_float64(3), True).step_mode == "cuda-graph"
