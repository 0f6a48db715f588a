"""framework/steps.py (with backends/cuda/graph.py and backends/torch/graph.py) and the
Trainer's choice of step: the recorded step trains like the eager one, never waits for the
GPU, and falls back, saying why, where it cannot be used.

The GPU cases skip, with the reason, without CuPy (or, for ``graph_device``'s PyTorch
half, without a CUDA device PyTorch sees); the choice of step is checked everywhere.
"""

import time

import numpy as np
import pytest

import backends
from framework.trainer import Trainer
from models import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from framework.testing.plugin import unusable
from tests.conftest import to_host
from tests.backends.cuda.test_gpu import data, needs_gpu, spin_kernel


@pytest.fixture(params=["cupy", "torch"])
def graph_device(request):
    """``(name, device)`` of a library whose CUDA graphs the step records: CuPy, and
    PyTorch's CUDA tensors (backends/torch/graph.py)."""
    name = request.param
    usable, why = backends.backend_class(name).usable()
    if not usable:
        pytest.skip(unusable(name, why))
    if name == "torch" and "cuda" not in backends.backend_class("torch").devices():
        pytest.skip(unusable("torch", "PyTorch sees no CUDA device"))
    with backends.using(name, device="cuda:0" if name == "torch" else None):
        yield (name, "cuda:0" if name == "torch" else None)


def run(name, graph, optimizer="SGD", n=2000, batch=100, iters=200, seed=4, sampling="epoch",
        make_net=lambda: TwoLayerNet(784, 50, 10, seed=3), lr=0.1, trainer_class=Trainer):
    """A short run on ``name`` (a backend's name, or ``(name, device)``)."""
    name, device = (name, None) if isinstance(name, str) else name
    backends.use(name, device=device)
    x, t = data(n)
    net = make_net()
    trainer = trainer_class(net, x, t, x[:500], t[:500], iters=iters, mini_batch_size=batch,
                            optimizer=optimizer, optimizer_param={"lr": lr}, verbose=False,
                            seed=seed, graph=graph, sampling=sampling)
    trainer.train()
    return trainer, np.array(trainer.train_loss_list), {k: to_host(v) for k, v in
                                                        net.params.items()}


def assert_same_run(a, b, loss_rtol=2e-4, param_rtol=1e-3):
    """Same losses and parameters up to float32 rounding, which differs between the two
    steps' GEMMs (cuBLAS eagerly, xpnet's tile GEMM in the graph) and grows step by step.
    A wrong step (a stale learning rate, a lost update, a reused mask) differs by percents.
    The absolute floor covers parameters whose exact gradient is zero (a bias before batch
    norm), which hold rounding noise near 1e-8."""
    (_, loss_a, params_a), (_, loss_b, params_b) = a, b
    assert len(loss_a) == len(loss_b)
    np.testing.assert_allclose(loss_a, loss_b, rtol=loss_rtol)
    for key, value in params_a.items():
        np.testing.assert_allclose(params_b[key], value, rtol=param_rtol,
                                   atol=max(1e-4 * np.abs(value).max(), 1e-6), err_msg=key)


def assert_same_updates(a, b, start, loss_rtol=1e-3, rtol=0.05):
    """For convolutional nets, whose GEMMs sum 25 to 600 products per output in different
    orders, and whose ReLUs and max-pools turn a rounding difference into a different
    route for a gradient: the same losses to 1e-3, and each parameter moved from ``start``
    by the same step to ``rtol`` of its length; a wrong step differs by the whole step."""
    (_, loss_a, params_a), (_, loss_b, params_b) = a, b
    assert len(loss_a) == len(loss_b)
    np.testing.assert_allclose(loss_a, loss_b, rtol=loss_rtol)
    for key, p0 in start.items():
        moved = np.linalg.norm(params_a[key] - p0)
        assert moved > 0, key
        assert np.linalg.norm(params_b[key] - params_a[key]) <= rtol * moved, key


class TwiceTrainer(Trainer):
    """A ``train_step`` of the user's own (as one that clips gradients or logs would be): here
    the default step, taken twice on each batch."""

    def train_step(self, x_batch, t_batch):
        super().train_step(x_batch, t_batch)
        return super().train_step(x_batch, t_batch)


def assert_the_trainers_own_step_runs(device, graph, mode):
    """The subclass's step, in the mode asked for, is its eager run and not the plain one."""
    own = run(device, graph, iters=40, trainer_class=TwiceTrainer)
    assert own[0].step_mode.startswith(mode), own[0].step_mode
    assert_same_run(run(device, False, iters=40, trainer_class=TwiceTrainer), own)
    plain = run(device, False, iters=40)
    start = {k: to_host(v) for k, v in TwoLayerNet(784, 50, 10, seed=3).params.items()}
    for key, p0 in start.items():  # two updates a batch: each parameter moved further
        ratio = np.linalg.norm(own[2][key] - p0) / np.linalg.norm(plain[2][key] - p0)
        assert 1.2 < ratio < 2.5, (key, ratio)  # (the plain step's run: 1 to rounding)


def test_a_trainers_own_train_step_is_what_every_step_runs(backend):
    """Eager, and on JAX compiled: the step is the Trainer's ``train_step``, a subclass's
    override included (the recorded CUDA-graph step: the test below)."""
    mode = "jit" if backend.step_compiler() is not None else "eager"
    assert_the_trainers_own_step_runs((backend.name, backend.device), "auto", mode)


def test_a_trainers_own_train_step_is_what_the_cuda_graph_records(graph_device):
    assert_the_trainers_own_step_runs(graph_device, True, "cuda-graph")


def test_numpy_trains_eagerly_and_says_why():
    trainer, *_ = run("numpy", "auto", iters=20)
    assert trainer.step_mode == "eager (the numpy backend has no CUDA graphs on cpu)"
    with pytest.raises(ValueError, match="graph=True, but .* numpy backend has no CUDA graphs"):
        run("numpy", True, iters=20)
    for bad in ("yes", 1, 0, None):  # 1 == True ran 'auto''s way, without True's error
        with pytest.raises(ValueError, match=rf"graph={bad!r}; expected 'auto', True or False"):
            run("numpy", bad, iters=20)


def test_graph_true_where_no_graph_can_be_is_refused_when_the_trainer_is_made(capsys):
    """Not when training starts: a 0% progress bar was drawn before the error."""
    backends.use("numpy")
    x, t = data(200)
    with pytest.raises(ValueError, match=r"^Trainer: graph=True, but the step cannot be a "
                                         r"CUDA graph: the numpy backend has no CUDA graphs"):
        Trainer(TwoLayerNet(784, 20, 10, seed=3), x, t, x[:50], t[:50], iters=5,
                mini_batch_size=50, verbose=True, graph=True)
    assert capsys.readouterr().err == ""


def test_pytorchs_cpu_tensors_train_eagerly_and_say_why():
    if "torch" not in backends.available():
        pytest.skip(unusable("torch", backends.backend_class("torch").usable()[1]))
    trainer, *_ = run(("torch", "cpu"), "auto", iters=20)
    assert trainer.step_mode == "eager (the torch backend has no CUDA graphs on cpu)"
    with pytest.raises(ValueError, match="graph=True, but .* torch backend has no CUDA graphs "
                                         "on cpu"):
        run(("torch", "cpu"), True, iters=20)


@pytest.mark.parametrize("optimizer", ["SGD", "Momentum"])
def test_graph_step_trains_like_the_eager_step(graph_device, optimizer):
    graph = run(graph_device, "auto", optimizer)
    assert graph[0].step_mode == "cuda-graph"
    eager = run(graph_device, False, optimizer)
    assert eager[0].step_mode == "eager (graph=False)"
    assert_same_run(eager, graph)
    assert_same_run(run("numpy", "auto", optimizer), graph)


DEEP_NETS = {
    "5 layers": lambda: MultiLayerNet(784, [100] * 5, 10, seed=3),
    "batch norm": lambda: MultiLayerNetExtend(784, [100] * 3, 10, use_batchnorm=True, seed=3),
    "dropout + decay": lambda: MultiLayerNetExtend(784, [100] * 3, 10, use_dropout=True,
                                                   dropout_ration=0.2, weight_decay_lambda=0.01,
                                                   seed=3),
}


@pytest.mark.parametrize("net", DEEP_NETS)
def test_graph_step_of_deeper_nets_trains_like_the_eager_step(graph_device, net):
    """Batch norm's running averages and dropout's device generator are recorded with the
    step: every replay draws a new mask, as the eager step does, and as NumPy does.

    60 steps: on these random labels a 5-layer net is chaotic, and float32 rounding
    differences between GEMMs grow to percents by step 200 (seen on an H200)."""
    graph = run(graph_device, "auto", "Momentum", make_net=DEEP_NETS[net], iters=60)
    assert graph[0].step_mode == "cuda-graph"
    eager = run(graph_device, False, "Momentum", make_net=DEEP_NETS[net], iters=60)
    assert_same_run(eager, graph, loss_rtol=1e-3)
    assert_same_run(run("numpy", "auto", "Momentum", make_net=DEEP_NETS[net], iters=60),
                    graph, loss_rtol=1e-3)
    network = graph[0].network
    for key, value in network.state().items():  # the state moved on the device, step by step
        np.testing.assert_allclose(to_host(value), to_host(eager[0].network.state()[key]),
                                   rtol=1e-3, atol=1e-5, err_msg=key)


def small_conv(deep):
    if deep:
        return DeepConvNet(seed=3)
    return SimpleConvNet(conv_param={"filter_num": 8, "filter_size": 5, "pad": 0, "stride": 1},
                         weight_init_std="he", seed=3)


def conv_run(name, graph, deep):
    """A few steps of a small conv net on ``name`` (or ``(name, device)``): 12 of
    SimpleConvNet, 6 of DeepConvNet (see below), batch 50, Momentum."""
    name, device = (name, None) if isinstance(name, str) else name
    backends.use(name, device=device)
    x, t = data(600)
    trainer = Trainer(small_conv(deep), x.reshape(-1, 1, 28, 28), t, x[:100].reshape(
        -1, 1, 28, 28), t[:100], iters=6 if deep else 12, mini_batch_size=50,
        optimizer="Momentum", optimizer_param={"lr": 0.01}, verbose=False, seed=4,
        graph=graph)
    trainer.train()
    return trainer, np.array(trainer.train_loss_list), {
        k: to_host(v) for k, v in trainer.network.params.items()}


@needs_gpu
@pytest.mark.parametrize("gemm", ["auto", "own", "cublas"])
@pytest.mark.parametrize("deep", [False, True])
def test_graph_step_of_convnets_trains_like_the_eager_step(on_cupy, deep, gemm, monkeypatch):
    """Images gathered into the graph's (batch, 1, 28, 28) buffer, convolutions on the
    graph's own GEMM, on cuBLAS through a handle of ours, or (the default) each where it
    is faster: forced with graph=True, whether or not 'auto' would keep it.

    DeepConvNet's float32 rounding doubles about every 3 steps at this rate: on NumPy,
    against its own float64 run, the worst parameter is 0.5% off after 3 steps, 1.8% after
    6 and 7% after 12 (NumPy against array-api-strict alike, though the two agree to 1e-15
    in float64), so it takes 6 steps, where 5% still tells rounding from a wrong step."""
    import cupy
    monkeypatch.setattr(backends.ops_for(cupy.zeros(1, dtype=cupy.float32)), "graph_gemm", gemm)
    graph = conv_run("cupy", True, deep)
    assert graph[0].step_mode == "cuda-graph"
    start = {k: to_host(v) for k, v in small_conv(deep).params.items()}
    assert_same_updates(conv_run("cupy", False, deep), graph, start)
    assert_same_updates(conv_run("numpy", "auto", deep), graph, start)
    auto = conv_run("cupy", "auto", deep)[0].step_mode  # the faster of the two, said either way
    assert auto == "cuda-graph" or auto.startswith("eager (faster than the CUDA graph here")


@pytest.mark.parametrize("deep", [False, True])
def test_graph_step_of_convnets_on_pytorchs_cuda_tensors(deep):
    """PyTorch's wing recorded: conv2d, convolution_backward and the pooling's indices in a
    torch.cuda.CUDAGraph, images gathered by index_select; as its eager step and NumPy."""
    if "torch" not in backends.available() or \
            "cuda" not in backends.backend_class("torch").devices():
        pytest.skip(unusable("torch", "PyTorch sees no CUDA device"))
    graph = conv_run(("torch", "cuda:0"), True, deep)
    assert graph[0].step_mode == "cuda-graph"
    start = {k: to_host(v) for k, v in small_conv(deep).params.items()}
    assert_same_updates(conv_run(("torch", "cuda:0"), False, deep), graph, start)
    assert_same_updates(conv_run("numpy", "auto", deep), graph, start)


def test_short_last_batch_and_choice_sampling(graph_device):
    """1950 samples in batches of 100: each epoch's 20th batch (50 samples) runs eagerly."""
    for sampling in ("epoch", "choice"):
        graph = run(graph_device, True, n=1950, iters=60, sampling=sampling)
        assert graph[0].step_mode == "cuda-graph"
        assert_same_run(run(graph_device, False, n=1950, iters=60, sampling=sampling), graph)


@needs_gpu
def test_recording_changes_nothing(on_cupy):
    from framework.steps import GraphStep
    from framework.optimizers import Momentum
    x, t = data()
    net = TwoLayerNet(784, 50, 10, seed=0)
    before = {k: to_host(v) for k, v in net.params.items()}
    trainer = Trainer(net, x, t, x[:100], t[:100], epochs=1, verbose=False, seed=0,
                      optimizer=Momentum(lr=0.1))
    step = GraphStep(net, trainer.optimizer, trainer.batches).record()
    for key, value in before.items():
        np.testing.assert_array_equal(to_host(net.params[key]), value, err_msg=key)
    for v in trainer.optimizer.state["v"].values():
        assert not to_host(v).any()
    assert int(step.feed.counter[0]) == 0 and step.pool_bytes() > 0


def test_adam_is_recorded_and_takes_each_steps_size(graph_device):
    """Adam's step count and size live on the device, so the replays advance them."""
    graph = run(graph_device, True, "Adam", iters=60, lr=0.001)
    assert graph[0].step_mode == "cuda-graph" and graph[0].optimizer.iter == 60
    eager = run(graph_device, False, "Adam", iters=60, lr=0.001)
    assert eager[0].optimizer.iter == 60
    assert_same_run(eager, graph)
    assert_same_run(run("numpy", "auto", "Adam", iters=60, lr=0.001), graph)


@pytest.mark.parametrize("change", ["learning rate", "dropout ratio", "weight decay"])
def test_a_changed_number_is_recorded_again(graph_device, change):
    """A learning-rate schedule, a dropout ratio or weight decay changed at an epoch end
    must reach the replayed step: the recording holds each as a constant."""
    def change_it(trainer, record):
        if change == "learning rate":
            trainer.optimizer.lr *= 0.1
        elif change == "dropout ratio":
            trainer.network.layers["Dropout1"].dropout_ratio = 0.5
        else:
            trainer.network.weight_decay_lambda = 0.5
    runs = []
    for graph in (True, False):
        backends.use(graph_device[0], device=graph_device[1])
        x, t = data()
        net = DEEP_NETS["dropout + decay"]()
        trainer = Trainer(net, x, t, x[:100], t[:100], epochs=3, verbose=False, seed=1,
                          optimizer_param={"lr": 0.1}, callbacks=[change_it], graph=graph)
        trainer.train()
        runs.append((trainer, np.array(trainer.train_loss_list),
                     {k: to_host(v) for k, v in net.params.items()}))
    assert runs[0][0].step_mode == "cuda-graph"
    assert_same_run(runs[1], runs[0])


@pytest.mark.parametrize("make", [
    lambda: MultiLayerNetExtend(20, [12, 10], 4, use_batchnorm=True, use_dropout=True,
                                dropout_ration=0.2, weight_decay_lambda=0.01, seed=3),
    lambda: SimpleConvNet(input_dim=(1, 10, 10), seed=3),
], ids=["batch norm, dropout, decay", "SimpleConvNet"])
def test_what_a_step_bakes_in_moves_with_a_setting_never_with_a_step(backend, make):
    """framework.step.baked_in, which both the recorded and the compiled step compare before
    each epoch: unchanged by training steps and evaluations (else each epoch would record
    or compile anew), changed by each setting a step holds as a constant."""
    from framework.optimizers import SGD
    from framework.step import baked_in
    net = make()
    rng = np.random.default_rng(0)
    shape = (4, 20) if isinstance(net, MultiLayerNetExtend) else (4, 1, 10, 10)
    x = backend.asarray(rng.random(shape, dtype=np.float32))
    t = backend.asarray(rng.integers(0, 4, 4))
    before = baked_in(net)
    opt = SGD(lr=0.1)
    for _ in range(3):
        opt.update(net.params, net.gradient(x, t))
    net.accuracy(x, t)
    net.loss(x, t)
    assert baked_in(net) == before
    net.weight_decay_lambda = 0.5
    assert baked_in(net) != before
    if isinstance(net, MultiLayerNetExtend):
        net.weight_decay_lambda = 0.01
        assert baked_in(net) == before
        net.layers["Dropout1"].dropout_ratio = 0.5
        assert baked_in(net) != before
        net.layers["Dropout1"].dropout_ratio = 0.2
        net.layers["BatchNorm1"].momentum = 0.5
        assert baked_in(net) != before


def test_what_a_step_bakes_in_of_a_network_of_the_users_own():
    """The book's chapter-5 net (no weight decay, layers of ours) and a layer of the user's
    own with ``__slots__`` (no ``__dict__``): read, never an error."""
    from framework.step import baked_in
    from tests.framework.distributed_job import BookTwoLayerNet

    class Scale:
        __slots__ = ("factor",)

    net = BookTwoLayerNet(4, 3, 2)
    before = baked_in(net)
    assert before[0] == 0 and [name for name, _ in before[1]] == ["Affine1", "Relu1", "Affine2"]
    net.layers["Scale"] = Scale()
    assert baked_in(net)[1][-1] == ("Scale", ())
    with_scale = baked_in(net)
    net.layers["Relu1"].mode = "leaky"  # a setting in words is baked in as a number is
    assert baked_in(net) != with_scale
    net.layers = [layer for layer in net.layers.values()]  # not a dict: no layers read
    assert baked_in(net) == (0, ())


def test_a_network_of_the_users_own_keeps_its_losses_in_its_parameters_dtype():
    """A network with no ``dtype`` (the book's chapter-5 net: float64 parameters): the
    Trainer keeps each step's loss in the parameters' dtype, the very number its step
    computed, not rounded to float32."""
    from framework.trainer import Trainer
    from tests.framework.distributed_job import BookTwoLayerNet
    rng = np.random.default_rng(0)
    x, t = rng.random((40, 4)), rng.integers(0, 2, 40)
    net = BookTwoLayerNet(4, 3, 2)
    seen, gradient = [], net.gradient

    def recorded(xb, tb):
        grads = gradient(xb, tb)
        seen.append(float(net.lastLayer.loss))
        return grads
    net.gradient = recorded
    trainer = Trainer(net, x, t, x[:8], t[:8], epochs=1, mini_batch_size=10, verbose=False)
    trainer.train()
    assert trainer.step_mode.startswith("eager")
    assert trainer.train_loss_list == seen and len(seen) == 4


@needs_gpu
def test_switched_off_graphs_run_eagerly(on_cupy, monkeypatch):
    monkeypatch.setenv("XPNET_CUDA_GRAPH", "0")
    trainer, *_ = run("cupy", "auto", iters=10)
    assert trainer.step_mode == "eager (XPNET_CUDA_GRAPH=0)"


@needs_gpu
def test_graph_launches_never_wait_for_the_gpu(on_cupy):
    """As tests/backends/cuda/test_gpu.py's eager proof: 50 replays issued behind a 2 s kernel."""
    from framework.steps import GraphStep
    from framework.optimizers import SGD
    x, t = data()
    net = TwoLayerNet(784, 50, 10, seed=0)
    trainer = Trainer(net, x, t, x[:100], t[:100], epochs=1, mini_batch_size=20,
                      verbose=False, seed=0)
    step = GraphStep(net, SGD(lr=0.1), trainer.batches).record()
    step.start_epoch(trainer.batches.start_epoch())
    step.graph.launch()
    on_cupy.synchronize()
    spin_kernel(2.0)
    start = time.perf_counter()
    for _ in range(50):
        step.graph.launch()
    issued = time.perf_counter() - start
    on_cupy.synchronize()
    finished = time.perf_counter() - start
    assert finished > 1.5, "the spin kernel did not hold the stream; the test proves nothing"
    assert issued < 0.1, f"issuing 50 replays took {issued:.3f} s: something waited"
    assert int(step.feed.counter[0]) == 51
    assert np.isfinite(to_host(step.losses[:51])).all()


def test_the_steps_loss_comes_from_last_loss_or_the_last_layer_or_says_what_is_missing():
    """framework.step.step_loss: a network of the user's own that keeps neither met
    ``AttributeError: 'Mini' object has no attribute 'lastLayer'``."""
    from types import SimpleNamespace
    from framework.step import step_loss
    assert step_loss(SimpleNamespace(last_loss=1.5, lastLayer=None)) == 1.5
    assert step_loss(SimpleNamespace(lastLayer=SimpleNamespace(loss=2.5))) == 2.5  # the book's
    assert step_loss(SimpleNamespace(last_layer=SimpleNamespace(loss=3.5))) == 3.5

    class Mini:
        pass
    for network in (Mini(), SimpleNamespace(lastLayer=SimpleNamespace())):
        with pytest.raises(AttributeError, match=r"keeps no loss of its gradient's forward "
                                                 r"pass, which the Trainer reports: set "
                                                 r"network.last_loss in gradient\(\), or keep"):
            step_loss(network)
