"""JAX as a backend (backends/jax/, framework/jit_step.py): the compiled step against the
eager one, what the trace bakes in and what it takes as inputs, the step's choice, and
JAX without 64-bit numbers (in a process of its own: the switch is read at import)."""

import contextlib
import logging
import subprocess
import sys

import numpy as np
import pytest

import backends
from framework.testing.plugin import unusable
from framework.trainer import Trainer
from models import MultiLayerNetExtend
from tests.conftest import ROOT, to_host


@pytest.fixture
def jax_backend():
    usable, why = backends.backend_class("jax").usable()
    if not usable:
        pytest.skip(unusable("jax", why))
    with backends.using("jax") as chosen, chosen.with_float64():
        yield chosen


def data(n=300, features=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features)), rng.integers(0, classes, n)


def deep(dtype="float64"):
    return MultiLayerNetExtend(20, [12, 10], 4, use_batchnorm=True, use_dropout=True,
                               dropout_ration=0.2, weight_decay_lambda=0.01, seed=3,
                               dtype=dtype)


def batches(n=64, batch=32):
    """``data(n)`` on the device in batches of ``batch``, for a step driven by hand."""
    from framework.data import DeviceBatches
    x, t = data(n)
    return DeviceBatches(backends.to_device(x), backends.to_device(t), batch, seed=0)


def run(graph, make=deep, epochs=2, optimizer="Adam", callbacks=(), n=300, batch=32):
    x, t = data(n)
    net = make()
    trainer = Trainer(net, x, t, x[:50], t[:50], epochs=epochs, mini_batch_size=batch,
                      optimizer=optimizer, optimizer_param={"lr": 0.01}, verbose=False, seed=2,
                      graph=graph, callbacks=list(callbacks))
    trainer.train()
    return trainer, np.array(trainer.train_loss_list), {k: to_host(v) for k, v in
                                                        net.params.items()}


def test_the_compiled_step_is_the_eager_step(jax_backend):
    """Two epochs of a net with batch norm, dropout and weight decay, by Adam, in float64:
    the compiled step and the eager one to 1e-10 (a short last batch included: 300 samples
    in batches of 32 runs its tenth eagerly)."""
    jit, eager = run("auto"), run(False)
    assert jit[0].step_mode == "jit" and eager[0].step_mode == "eager (graph=False)"
    np.testing.assert_allclose(jit[1], eager[1], rtol=1e-10, atol=1e-10)
    for key, value in eager[2].items():
        np.testing.assert_allclose(jit[2][key], value, rtol=1e-10, atol=1e-10, err_msg=key)
    for key, value in eager[0].network.state().items():  # dropout's counters, the averages
        np.testing.assert_allclose(to_host(jit[0].network.state()[key]), to_host(value),
                                   rtol=1e-10, atol=1e-10, err_msg=key)
    assert jit[0].optimizer.iter == eager[0].optimizer.iter == 20


def test_the_compiled_step_runs_a_trainers_own_train_step(jax_backend):
    """A Trainer subclass's ``train_step`` is what the compiled step traces (as the graph
    step records it): here one that scales the loss it reports by 2."""
    class Doubling(Trainer):
        def train_step(self, x_batch, t_batch):
            return super().train_step(x_batch, t_batch) * 2

    x, t = data(64)
    losses = {}
    for graph in ("auto", False):
        net = deep()
        trainer = Doubling(net, x, t, x[:8], t[:8], epochs=1, mini_batch_size=32,
                           optimizer="SGD", optimizer_param={"lr": 0.01}, verbose=False,
                           seed=2, graph=graph)
        trainer.train()
        losses[trainer.step_mode] = np.array(trainer.train_loss_list)
    assert set(losses) == {"jit", "eager (graph=False)"}
    np.testing.assert_allclose(losses["jit"], losses["eager (graph=False)"], rtol=1e-10)
    plain = run("auto", epochs=1, optimizer="SGD", n=64)[1]
    np.testing.assert_allclose(losses["jit"], 2 * plain, rtol=1e-10)


def test_a_new_learning_rate_is_an_input_not_a_new_compilation(jax_backend):
    def decay(trainer, record):
        trainer.optimizer.lr *= 0.5
    jit = run("auto", callbacks=[decay], epochs=3)
    eager = run(False, callbacks=[decay], epochs=3)
    np.testing.assert_allclose(jit[1], eager[1], rtol=1e-10, atol=1e-10)
    assert jit[0]._step._compiled._cache_size() == 1  # one trace for all three epochs


@pytest.mark.parametrize("change", ["dropout ratio", "weight decay"])
def test_a_number_the_trace_baked_in_compiles_the_step_anew(jax_backend, change):
    """A layer's setting or the network's weight decay, changed between epochs, reaches the
    compiled step (a stale one would train the second epoch on the first's numbers)."""
    def change_it(trainer, record):
        if change == "dropout ratio":
            trainer.network.layers["Dropout1"].dropout_ratio = 0.5
        else:
            trainer.network.weight_decay_lambda = 0.5
    jit = run("auto", callbacks=[change_it], epochs=2)
    eager = run(False, callbacks=[change_it], epochs=2)
    assert jit[0].step_mode == "jit"
    np.testing.assert_allclose(jit[1], eager[1], rtol=1e-10, atol=1e-10)
    for key, value in eager[2].items():
        np.testing.assert_allclose(jit[2][key], value, rtol=1e-10, atol=1e-10, err_msg=key)


def test_a_network_whose_layers_would_not_see_new_parameters_is_refused(jax_backend):
    """The book's chapter-5 net keeps its params in a plain dict: on JAX an update binds new
    arrays there, which its layers never see, so it would train nothing, silently."""
    from tests.framework.distributed_job import BookTwoLayerNet
    x, t = data(64, features=12, classes=3)
    net = BookTwoLayerNet(12, 7, 3)
    for key in net.params:
        net.params[key] = backends.to_device(net.params[key])
    for graph in ("auto", False):
        with pytest.raises(ValueError, match="BookTwoLayerNet's params are a plain dict, and "
                                             "jax's arrays are immutable.*models.base.Network"):
            Trainer(net, x, t, x[:8], t[:8], epochs=1, mini_batch_size=16, verbose=False,
                    graph=graph)


def test_the_trainer_reads_what_the_compiled_step_made(jax_backend, tmp_path):
    """After train(), and in the checkpoint it wrote, the network holds the step's arrays
    (handed to XLA each step, put back at each epoch's end)."""
    path = str(tmp_path / "run.npz")
    x, t = data()
    net = deep("float32")
    trainer = Trainer(net, x, t, x[:50], t[:50], epochs=1, mini_batch_size=30, verbose=False,
                      seed=1, checkpoint=path)
    trainer.train()
    assert trainer.step_mode == "jit"
    after = {k: to_host(v) for k, v in net.params.items()}  # readable: not donated
    loaded = deep("float32")
    loaded.load_params(path)
    for key, value in after.items():
        np.testing.assert_array_equal(to_host(loaded.params[key]), value, err_msg=key)


def test_the_trainers_evaluations_count_through_one_compiled_function(jax_backend,
                                                                     monkeypatch):
    """On the compiled step the Trainer's evaluations run the network's own
    ``count_correct`` compiled, traced once for each batch shape (here 300 training and 50
    test samples: two traces for seven evaluations): the accuracies of the eager
    evaluation; the network has its own method back afterwards. The step itself is traced
    once in three epochs (batch norm's last batch size, kept for its backward, is not a
    number the trace bakes in)."""
    from framework.jit_step import JitStep
    traces, steps = [], []
    count, step = JitStep._count_pure, JitStep._pure

    def counted(self, *args):
        traces.append(args[2].shape)
        return count(self, *args)

    def stepped(self, *args):
        steps.append(1)
        return step(self, *args)
    monkeypatch.setattr(JitStep, "_count_pure", counted)
    monkeypatch.setattr(JitStep, "_pure", stepped)
    jit, eager = run("auto", epochs=3)[0], run(False, epochs=3)[0]
    assert jit.step_mode == "jit" and sorted(traces) == [(50, 20), (300, 20)]
    assert len(steps) == 1
    assert jit.train_acc_list == eager.train_acc_list and len(jit.train_acc_list) == 3
    assert jit.test_acc_list == eager.test_acc_list
    assert jit.final_test_acc == eager.final_test_acc
    assert "count_correct" not in vars(jit.network)


def test_a_networks_own_accuracy_is_what_the_compiled_steps_trainer_reports(jax_backend):
    class Own(MultiLayerNetExtend):
        def accuracy(self, x, t, batch_size=None):
            return 0.25
    trainer = run("auto", make=lambda: Own(20, [12, 10], 4, seed=3, dtype="float64"),
                  epochs=1)[0]
    assert trainer.step_mode == "jit" and trainer.train_acc_list == [0.25]


def test_with_float64_is_scoped_and_gives_jax_its_switch_back():
    """JAX's switch is JAX's: the block turns it on, and after it the switch is as it was,
    on or off."""
    if "jax" not in backends.available():
        pytest.skip(unusable("jax", backends.backend_class("jax").usable()[1]))
    import jax
    before = bool(jax.config.jax_enable_x64)
    try:
        with backends.using("jax") as chosen:
            for start in (False, True):
                jax.config.update("jax_enable_x64", start)
                with chosen.with_float64():
                    assert jax.config.jax_enable_x64
                assert bool(jax.config.jax_enable_x64) is start
    finally:
        jax.config.update("jax_enable_x64", before)


NO_X64 = r"""
import os, sys
os.environ.pop("JAX_ENABLE_X64", None)
import numpy as np, backends
from models import TwoLayerNet, MultiLayerNetExtend
from framework.trainer import Trainer
backends.use("jax")
print("usable:", backends.backend_class("jax").usable()[1])
for ask in (lambda: TwoLayerNet(8, 5, 3, dtype="float64"),
            lambda: backends.current().asarray([1], dtype="uint64")):
    try:
        ask()
    except TypeError as e:
        print("refused:", e)
rng = np.random.default_rng(0)
x, t = rng.random((40, 8)), rng.integers(0, 3, 40)
for graph in ("auto", False):
    net = TwoLayerNet(8, 5, 3, seed=0)
    trainer = Trainer(net, x, t, x[:8], t[:8], epochs=2, mini_batch_size=10, verbose=False,
                      graph=graph)
    trainer.train()
    print(trainer.step_mode, str(net.params["W1"].dtype), np.isfinite(trainer.train_loss_list).all())
# dropout: its generator in 32-bit words, the masks and the training NumPy's
losses = {}
for name, graph in (("numpy", False), ("jax", "auto"), ("jax", False)):
    backends.use(name)
    net = MultiLayerNetExtend(8, [6, 6], 3, use_dropout=True, dropout_ration=0.3, seed=0)
    trainer = Trainer(net, x, t, x[:8], t[:8], epochs=2, mini_batch_size=10, verbose=False,
                      graph=graph, seed=3)
    trainer.train()
    losses[name, graph] = np.array(trainer.train_loss_list)
    key = net.layers["Dropout1"].key
    print("generator", name, graph, str(key.dtype), tuple(key.shape),
          backends.to_numpy(net.layers["Dropout1"].counter).tolist())
print("losses", max(abs(losses[k] - losses["numpy", False]).max() for k in losses))
# a checkpoint from JAX's words loads on NumPy, and NumPy's back, at the same position
net.save_params("jax.npz")
held = np.load("jax.npz")["state/Dropout1/counter"]
print("checkpoint holds", held.dtype, held.tolist())
backends.use("numpy")
other = MultiLayerNetExtend(8, [6, 6], 3, use_dropout=True, dropout_ration=0.3, seed=9)
other.load_params("jax.npz")
print("numpy loads", other.layers["Dropout1"].counter.tolist(),
      int(other.layers["Dropout1"].key[0]) == int(np.load("jax.npz")["state/Dropout1/key"][0]))
mask = other.layers["Dropout1"].current_mask((10, 6))
other.save_params("numpy.npz")
backends.use("jax")
back = MultiLayerNetExtend(8, [6, 6], 3, use_dropout=True, dropout_ration=0.3, seed=7)
back.load_params("numpy.npz")
print("jax loads", backends.to_numpy(back.layers["Dropout1"].counter).tolist(),
      bool((backends.to_numpy(back.layers["Dropout1"].current_mask((10, 6))) == mask).all()))
"""


def test_without_64_bits_jax_trains_in_float32_and_says_what_float64_needs(tmp_path):
    """JAX's default, float32 only: float64 is refused naming JAX_ENABLE_X64, and
    ``python -m backends`` says so first; networks train, compiled and eagerly, dropout's
    too (its generator in 32-bit words): the same losses as on NumPy, and checkpoints that
    load across the two at the generator's position, drawing the same mask."""
    if "jax" not in backends.available():
        pytest.skip(unusable("jax", backends.backend_class("jax").usable()[1]))
    env = {k: v for k, v in __import__("os").environ.items() if k != "JAX_ENABLE_X64"}
    env["PYTHONPATH"] = ROOT
    done = subprocess.run([sys.executable, "-c", NO_X64], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    refused = [line for line in lines if line.startswith("refused:")]
    assert len(refused) == 2, done.stdout
    assert "JAX computes in float32 unless JAX_ENABLE_X64=1" in refused[0]
    assert refused[0].endswith("or use float32 (dtype='float32')")
    assert "JAX has no 64-bit integers unless JAX_ENABLE_X64=1" in refused[1]
    assert refused[1].endswith("or use 'int32' or 'uint32'")
    assert "jit float32 True" in lines and "eager (graph=False) float32 True" in lines
    said = [line for line in lines if line.startswith("usable:")]
    assert said and said[0].endswith("; float32 only: float64 needs JAX_ENABLE_X64=1, set "
                                     "before JAX is imported"), said
    # with 64 bits on (this process's), python -m backends says nothing of it
    assert "float32 only" not in backends.backend_class("jax").usable()[1]
    # 8 steps a run: each dropout layer's counter at 8, in uint64 on NumPy, in words on JAX
    assert "generator numpy False uint64 (1,) [8]" in lines, done.stdout
    assert "generator jax auto uint32 (2,) [0, 8]" in lines, done.stdout
    assert "generator jax False uint32 (2,) [0, 8]" in lines, done.stdout
    loss_gap = float(next(line for line in lines if line.startswith("losses")).split()[1])
    assert loss_gap < 1e-5, done.stdout  # float32's rounding; a different mask moves it more
    assert "checkpoint holds uint64 [8]" in lines, done.stdout
    assert "numpy loads [8] True" in lines and "jax loads [0, 8] True" in lines, done.stdout


def test_no_tracer_is_left_in_the_network_after_a_trace(jax_backend):
    """The trace lends the network, its layers and the optimizer JAX's tracers; after it
    nothing holds one (a tracer read outside its trace raises, and keeps the trace's memory
    alive): the last loss is the one from before, the layers' saved arrays are freed, a
    reader's layer holds nothing its trace made, the learning rate is the number it was.
    Driven by hand: no evaluation traced after it."""
    import jax
    from framework.jit_step import JitStep
    from framework.layers import Layer
    from framework.optimizers import Adam

    class Keeping(Layer):
        """A reader's identity layer that keeps its input under a name of its own, made
        by its first forward and not in ``saved``: a trace must take that away too."""

        def forward(self, x):
            self.seen = x
            return x

        def backward(self, dout):
            return dout

    net, opt, data64 = deep(), Adam(lr=0.01), batches()
    net.layers["Keeping"] = Keeping()  # put in (and so taken in), then made the first
    net.layers.move_to_end("Keeping", last=False)
    net.loss(data64.x[:4, ...], data64.t[:4])
    before = net.last_loss
    del net.layers["Keeping"].seen  # the trace below is the first forward to make it
    step = JitStep(net, opt, data64)
    step.start_epoch(data64.start_epoch())
    step.run(0)
    step.sync()
    assert net.last_loss is before
    held = {f"{layer.name}.{attr}": getattr(layer, attr)
            for layer in [*net.layers.values(), net.last_layer] for attr in layer.saved}
    assert [name for name, value in held.items() if isinstance(value, jax.core.Tracer)] == []
    assert all(value is None for value in held.values()), held
    anywhere = [f"{layer.name}.{attr}" for layer in [*net.layers.values(), net.last_layer]
                for attr, value in vars(layer).items() if isinstance(value, jax.core.Tracer)]
    assert anywhere == [] and not hasattr(net.layers["Keeping"], "seen"), anywhere
    assert opt.lr == 0.01 and not isinstance(opt.lr, jax.core.Tracer)


def test_the_compiled_step_hands_its_buffers_to_xla(jax_backend):
    """The parameters, the layers' state, the optimizer's state and the epoch's losses are
    donated: XLA writes a step's new arrays over the old ones (one copy of each on the
    device, not two), and the network gets the step's arrays back at ``sync()``."""
    from framework.jit_step import JitStep
    from framework.optimizers import Adam
    net, opt, data64 = deep(), Adam(lr=0.01), batches()
    step = JitStep(net, opt, data64)
    step.start_epoch(data64.start_epoch())
    held = {**{f"params {k}": a for k, a in net.params.items()},
            **{f"state {k}": a for k, a in net.state().items()},
            **{f"optimizer {k}": a for k, a in opt.arrays().items()}, "losses": step.losses}
    step.run(0)
    assert [name for name, a in held.items() if not a.is_deleted()] == []
    step.sync()
    assert not any(a.is_deleted() for a in [*net.params.values(), *opt.arrays().values()])


def test_an_eager_step_reads_no_array_back(jax_backend, monkeypatch):
    """Reading a JAX array's values waits for everything queued before it, on the CPU too:
    the loss read its labels' range at every eager step, a quarter of an eager TwoLayerNet
    step on this project's CPU. The eager step (batch norm, dropout, weight decay, Adam)
    reads nothing back once its first step has seen its kinds of input; a label outside
    the classes gives a NaN loss there, as on a GPU (the Trainer checks its data once)."""
    from jax._src.array import ArrayImpl

    from framework.optimizers import Adam
    from framework.steps import EagerStep
    net, data64 = deep(), batches()
    step = EagerStep(net, Adam(lr=0.01), data64, "by hand")
    step.start_epoch(data64.start_epoch())
    step.run(0)

    def read(array):
        raise AssertionError("an eager step read an array's values back")
    with monkeypatch.context() as patched:
        patched.setattr(ArrayImpl, "_value", property(read))
        step.run(1)
        step.start_epoch(data64.start_epoch())
        step.run(0)
    assert np.isfinite(to_host(net.last_loss))
    x, t = data(4)
    t[1] = 4  # one past the last of the 4 classes
    assert np.isnan(float(net.loss(backends.to_device(x), backends.to_device(t))))


def test_a_step_driven_by_hand_syncs_itself_where_it_must(jax_backend):
    """After run() the network's own arrays were handed to XLA (donated): a new epoch and an
    evaluation take the step's arrays back first, as the Trainer's sync() would. Two
    epochs, then an accuracy, by hand: the eager step's numbers. The second epoch takes the
    data in order (the DeviceBatches of a user's shuffle=False: no order array)."""
    from framework.jit_step import JitStep
    from framework.optimizers import Adam
    from framework.steps import EagerStep
    results = {}
    for kind in (JitStep, EagerStep):
        net, opt, data64 = deep(), Adam(lr=0.01), batches()
        step = JitStep(net, opt, data64) if kind is JitStep else \
            EagerStep(net, opt, data64, "by hand")
        for epoch in range(2):
            data64.shuffle = epoch == 0
            step.start_epoch(data64.start_epoch())  # no sync() between the epochs
            step.run(0)
            step.run(1)
            if epoch == 0:
                made = step.seconds  # the trace and the compiling: the first call's time
        assert step.seconds == made and (made > 0) == (kind is JitStep)
        with step.evaluation():  # nor before the evaluation
            accuracy = net.accuracy(data64.x, data64.t)
        step.sync()
        results[kind.__name__] = accuracy, {k: to_host(v) for k, v in net.params.items()}
    (jit_acc, jit_params), (eager_acc, eager_params) = results["JitStep"], results["EagerStep"]
    assert jit_acc == eager_acc
    for key, value in eager_params.items():
        np.testing.assert_allclose(jit_params[key], value, rtol=1e-10, atol=1e-10, err_msg=key)


@pytest.mark.parametrize("kind, why", [
    ("Stateless", "Stateless has no state(): its layers' buffers cannot be threaded through "
                  "the compiled step"),
    ("PlainDict", "PlainDict's params are a plain dict: a new array put in it would not reach "
                  "its layers (a models.base.Network's params pass each one on)")])
def test_a_step_that_cannot_be_compiled_runs_eagerly_saying_why_or_is_refused(jax_backend,
                                                                               kind, why):
    """A network of the user's own without ``state()``, or whose ``params`` are a plain dict
    (a new array put there would not reach its layers; the Trainer refuses such a network
    sooner, a step made by hand finds it here): graph='auto' runs it eagerly and the step's
    mode says why; graph=True refuses it with the same reason."""
    from framework import steps
    from framework.optimizers import SGD
    net = deep()

    class Stateless:  # params that reach its layers, but no state() to thread through
        params = net.params

        def gradient(self, x, t):
            return net.gradient(x, t)

    class PlainDict(Stateless):
        params = dict(net.params)
        state = net.state
    made = {"Stateless": Stateless, "PlainDict": PlainDict}[kind]()
    data64 = batches()
    assert steps.choose(made, SGD(), data64, graph="auto").mode == \
        f"eager (not compiled: {why})"
    with pytest.raises(ValueError) as refused:
        steps.choose(made, SGD(), data64, graph=True)
    assert str(refused.value) == f"Trainer: graph=True, but the step cannot be compiled: {why}"


def test_jax_devices_go_by_the_names_every_backend_uses_or_as_jax_devices():
    """``cpu`` and ``cpu:0`` (``gpu``/``cuda``/``cuda:N`` and ``tpu`` where JAX's build sees
    them), the CPU's first; a ``jax.Device`` is taken as it is."""
    usable, why = backends.backend_class("jax").usable()
    if not usable:
        pytest.skip(unusable("jax", why))
    import jax
    names = backends.backend_class("jax").devices()
    assert names[:2] == ["cpu", "cpu:0"]
    cpu = jax.devices("cpu")[0]
    for device in ("cpu", "CPU:0", cpu):
        with backends.using("jax", device=device) as chosen:
            assert chosen.device == cpu


def test_jax_gpus_are_named_as_every_backend_names_them(monkeypatch):
    """A build that sees two GPUs (JAX's platform ``gpu``): ``gpu``/``cuda`` is the first,
    ``gpu:N``/``cuda:N`` each, in either case; the CPU's names are listed first. JAX
    itself stands in here: its device lists are a machine's."""
    usable, why = backends.backend_class("jax").usable()
    if not usable:
        pytest.skip(unusable("jax", why))
    import jax
    from backends.jax.backend import JaxBackend

    class Fake:
        Device = jax.Device
        platforms = {"cpu": ["c0"], "gpu": ["g0", "g1"]}

        def devices(self, platform=None):
            if platform is None:  # JAX's default: its accelerators first
                return self.platforms["gpu"] + self.platforms["cpu"]
            if platform not in self.platforms:
                raise RuntimeError(f"no {platform} backend")
            return self.platforms[platform]

    monkeypatch.setattr(JaxBackend, "_jax", staticmethod(lambda: Fake()))
    assert JaxBackend.devices() == ["cpu", "cpu:0", "cuda", "gpu", "cuda:0", "cuda:1",
                                    "gpu:0", "gpu:1"]
    for name, want in (("gpu", "g0"), ("cuda", "g0"), ("CUDA:1", "g1"), ("gpu:1", "g1"),
                       ("cpu", "c0")):
        assert JaxBackend.parse_device(name) == want, name
    for absent in ("tpu", "cuda:7"):
        with pytest.raises(backends.Unusable, match=r"JAX's GPU and TPU builds are installed "
                                                     r"apart from its CPU one"):
            JaxBackend.parse_device(absent)
    # a plain process takes JAX's default; a rank of a data-parallel job its local rank's GPU
    assert JaxBackend.default_device() == "g0"
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    assert JaxBackend.default_device() == "g1"
    monkeypatch.setenv("PMI_SIZE", "3")
    with pytest.raises(backends.Unusable, match="3 processes were started on this machine but "
                                                 "it has 2 GPUs"):
        JaxBackend.default_device()


def test_a_jax_older_than_xpnet_needs_is_unusable_saying_which(monkeypatch):
    usable, why = backends.backend_class("jax").usable()
    if not usable:
        pytest.skip(unusable("jax", why))
    import jax
    from backends.jax.backend import JaxBackend
    monkeypatch.setattr(jax, "__version__", "0.4.31")
    with pytest.raises(backends.Unusable, match=r"^JAX 0\.4\.31 is too old: xpnet needs "
                                                 r"0\.4\.32 or newer"):
        JaxBackend._load()
    monkeypatch.setattr(jax, "__version__", "0.4.32.dev20240701")
    assert JaxBackend._load() is not None


class Peeking:
    """A layer of the user's own that reads a value in Python (to log, or to branch): JAX
    cannot trace it, and runs it eagerly."""

    def __init__(self):
        self.largest = []

    def forward(self, x):
        self.largest.append(float(abs(x).max()))
        return x

    def backward(self, dout):
        return dout


def peeking():
    net = deep()
    net.layers["Relu1"] = Peeking()  # (between BatchNorm1 and Dropout1)
    return net


def test_a_step_that_cannot_be_traced_runs_eagerly_and_says_why(jax_backend):
    """``graph="auto"`` compiled the step at its first call and ended the run with JAX's
    ConcretizationTypeError; now the step runs eagerly, the run is the eager run, and
    ``step_mode`` says why. ``graph=True`` is an error saying why not."""
    auto, eager = run("auto", make=peeking), run(False, make=peeking)
    assert auto[0].step_mode.startswith("eager (the step cannot be compiled: "
                                        "ConcretizationTypeError: ")
    np.testing.assert_allclose(auto[1], eager[1], rtol=1e-10, atol=1e-10)
    for key in auto[2]:
        np.testing.assert_allclose(auto[2][key], eager[2][key], rtol=1e-10, atol=1e-10)
    assert len(auto[0].network.layers["Relu1"].largest) > 20  # every step, evaluations too
    with pytest.raises(ValueError, match=r"^Trainer: graph=True, but the step cannot be "
                                         r"compiled: it asks for a traced value in Python "
                                         r"\(ConcretizationTypeError: .*\); graph='auto' or "
                                         r"False runs it eagerly$"):
        run(True, make=peeking)


class PeekingWhenEvaluating(Peeking):
    """Reads a value in inference only (to log what the evaluations see)."""

    def forward(self, x, train_flg=True):
        if not train_flg:
            self.largest.append(float(abs(x).max()))
        return x


def test_an_evaluation_that_cannot_be_traced_runs_eagerly(jax_backend):
    """The step compiled, but the evaluation's compiled count ended the run at the first
    epoch's end in JAX's ConcretizationTypeError; now it counts eagerly, the same counts."""
    def make():
        net = deep()
        net.layers["Relu1"] = PeekingWhenEvaluating()
        return net
    auto, eager = run("auto", make=make), run(False, make=make)
    assert auto[0].step_mode == "jit"
    assert auto[0].test_acc_list == eager[0].test_acc_list
    assert auto[0].train_acc_list == eager[0].train_acc_list
    np.testing.assert_allclose(auto[1], eager[1], rtol=1e-10, atol=1e-10)
    assert auto[0].network.layers["Relu1"].largest  # it ran, eagerly


@contextlib.contextmanager
def compilations():
    """The list of the computations JAX compiles within the block (``jax.log_compiles``)."""
    import jax
    compiled = []

    class Compilations(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Compiling"):
                compiled.append(record.getMessage())
    handler = Compilations()
    logging.getLogger("jax").addHandler(handler)
    try:
        with jax.log_compiles():
            yield compiled
    finally:
        logging.getLogger("jax").removeHandler(handler)


def test_each_operation_outside_a_compiled_step_is_one_computation(jax_backend):
    """Eager JAX compiles each of its functions for each new shape (~30 ms on a CPU) and
    dispatches each at every call: the wing runs each operation as one ``jax.jit``
    computation (dropout's generator was some 300 of them, ReLU three). The first call on
    new shapes compiles once, the second not at all, and the results are the reference
    operations'. (JAX's caches are emptied first: a test before this one may have run
    the same shapes.)"""
    import jax

    from backends.ops.reference import StandardOps
    jax.clear_caches()
    ops = backends.ops_for(jax_backend.asarray(np.zeros(1)))
    reference = StandardOps(ops.xp, ops.backend)
    rng = np.random.default_rng(7)
    x = jax_backend.asarray(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    W = jax_backend.asarray(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    b = jax_backend.asarray(rng.standard_normal(4).astype(np.float32))
    key = jax_backend.asarray(np.array([5], dtype=np.uint64))
    counter = jax_backend.asarray(np.array([2], dtype=np.uint64))
    lr, lr_next = (jax_backend.asarray(np.float32(r)) for r in (0.01, 0.02))
    count = jax_backend.full((), 3, "float32")
    gW = jax_backend.asarray(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    flat, row = jax.numpy.reshape(x, (2, 108)), jax.numpy.reshape(x, (216,))[:108]
    var = row * row
    labels = jax_backend.asarray(np.array([3, 107]))
    rows = jax_backend.xp.arange(2)
    order = jax_backend.asarray(np.array([1, 0, 1, 0], dtype=np.int32))
    value = row[7]
    b4, squares = gW * 0.5, gW * gW  # a velocity, a sum of squared gradients
    dout = jax_backend.asarray(rng.standard_normal((2, 4, 6, 6)).astype(np.float32))
    columns = jax_backend.asarray(rng.standard_normal((27, 18)).astype(np.float32))
    pooled = jax_backend.asarray(rng.standard_normal((2, 3, 3, 3)).astype(np.float32))
    col = reference.conv(x, W, b, 1, 1, 6, 6)[1]  # (the wing's own compile once, below)
    arg, arg3 = (reference.max_pool(x, 2, 2, 2, 0, 3, 3)[1],
                 reference.max_pool(x, 3, 3, 2, 1, 3, 3)[1])
    calls = {"uniform": lambda o: o.uniform(key, counter, (7, 3), first=4),
             "relu": lambda o: o.relu(x),
             "sigmoid": lambda o: o.sigmoid(x),
             "max_pool": lambda o: o.max_pool(x, 2, 2, 2, 0, 3, 3),
             "conv": lambda o: o.conv(x, W, b, 1, 1, 6, 6),
             # windows added or written into an image: col2im's, the input's gradient's and
             # max pooling's (tiled 2 x 2 windows, and overlapping 3 x 3 ones at stride 2)
             "conv_grad": lambda o: o.conv_grad(dout, x, W, col, 1, 1),
             "col2im": lambda o: o.col2im(columns, (2, 3, 6, 6), 3, 3, 2, 1, 3, 3),
             "max_pool_grad": lambda o: o.max_pool_grad(pooled, arg, x, 2, 2, 2, 0),
             "max_pool_grad_overlapping": lambda o: o.max_pool_grad(pooled, arg3, x, 3, 3, 2,
                                                                    1),
             "adam_update": lambda o: o.adam_update(W, W, W, W, lr, 0.9, 0.999),
             "adam_step_size": lambda o: o.adam_step_size(count, 0.001, 0.9, 0.999),
             "momentum_update": lambda o: o.momentum_update(W, gW, b4, 0.01, 0.9),
             "nesterov_update": lambda o: o.nesterov_update(W, gW, b4, 0.01, 0.9),
             "adagrad_update": lambda o: o.adagrad_update(W, gW, squares, 0.01),
             "rmsprop_update": lambda o: o.rmsprop_update(W, gW, squares, 0.01, 0.99),
             "softmax_cross_entropy": lambda o: o.softmax_cross_entropy(flat, labels, rows),
             "sgd_update_all": lambda o: sgd_all(o, {"W": W, "b": b}, {"W": gW, "b": b}, lr),
             "take_batch": lambda o: o.take_batch(flat, labels, order, 1, 3),
             "weight_decay": lambda o: o.weight_decay([W, gW], 0.1),
             "weight_decay_grads": lambda o: o.weight_decay_grads([gW, W], [W, gW], 0.1),
             "set_at": lambda o: o.set_at(row, 5, value),
             "batch_norm_center": lambda o: o.batch_norm_center(flat, row),
             "batch_norm_normalize": lambda o: o.batch_norm_normalize(flat, var, row, row, 1e-6),
             "batch_norm_running": lambda o: o.batch_norm_running(row, row, row, row, 0.9),
             "batch_norm_grad_sums": lambda o: o.batch_norm_grad_sums(flat, flat, row),
             "batch_norm_grad": lambda o: o.batch_norm_grad(flat, flat, row, row, row)}
    def sgd_all(o, params, grads, lr):  # the updated mapping (it returns None)
        o.sgd_update_all(params, grads, lr)
        return params

    # products then sums (batch norm's, the optimizers' p - lr g, weight decay's): XLA's
    # multiply-adds
    fused = {name for name in calls if name.startswith(("batch_norm", "weight_decay"))} | \
        {"sgd_update_all", "momentum_update", "nesterov_update", "adagrad_update",
         "rmsprop_update"}
    fused.add("conv_grad")  # dW's product, dout's transpose folded into it: another order
    for name, call in calls.items():
        with compilations() as compiled:
            first = call(ops)
            assert len(compiled) == 1, (name, compiled)
            call(ops)
            assert len(compiled) == 1, (name, compiled)
        for got, want in zip(jax.tree_util.tree_leaves(first),
                             jax.tree_util.tree_leaves(call(reference))):
            got, want = to_host(got), to_host(want)
            if name in fused:  # a rounding apart
                np.testing.assert_allclose(got, want, rtol=0, err_msg=name,
                                           atol=4 * np.finfo(want.dtype).eps * np.abs(want).max())
            else:
                np.testing.assert_array_equal(got, want, err_msg=name)
    with compilations() as compiled:  # another step's index, batch and learning rate: the
        ops.set_at(row, 6, value)  # same computations
        ops.take_batch(flat, labels, order, 2, 4)
        ops.momentum_update(W, gW, b4, 0.02, 0.9)
        ops.adam_update(W, W, W, W, lr_next, 0.9, 0.999)
        by_name = ops.rmsprop_update(W, gW, h=squares, lr=0.01, decay_rate=0.99)
    assert compiled == []
    for got, want in zip(by_name, calls["rmsprop_update"](ops)):  # the contract's names
        np.testing.assert_array_equal(to_host(got), to_host(want))


@pytest.mark.parametrize("dtype", [None, "float32", "float64", "int32", "bfloat16"])
def test_host_data_reaches_the_device_without_a_computation(jax_backend, dtype):
    """``asarray`` of host data (each batch a loop sends, each parameter) casts on the host
    and places by ``jax.device_put``: ``jnp.asarray(x, dtype=, device=)`` ran a cast and a
    placement, each compiled for every new shape. The values are the same bits, the array
    is on the backend's device, and it is a copy: a later write to the host array does not
    reach it. bfloat16, which XLA casts, still arrives."""
    rng = np.random.default_rng(3)
    for n in (8, 103, 1000, 100_000):  # sizes whose memory JAX's CPU client kept as its own
        host = np.concatenate([rng.standard_normal(n - 6) * 10.0 ** rng.integers(-45, 40, n - 6),
                               [1e-40, 1e-46, 3.5e39, -np.inf, np.nan, -0.0]]).reshape(1, n)
        if dtype == "int32":
            host = rng.integers(-1000, 1000, (1, n))
        with compilations() as compiled, np.errstate(over="ignore"):
            got = jax_backend.asarray(host, dtype)
            want = np.array(host, dtype=jax_backend.dtype(dtype))  # as JAX casts it
        assert compiled == [] or dtype == "bfloat16", compiled
        assert got.dtype == want.dtype and got.device == jax_backend.device
        np.testing.assert_array_equal(np.asarray(got).view(np.uint8), want.view(np.uint8))
        host[0, :2] = 12345
        np.testing.assert_array_equal(np.asarray(got).view(np.uint8), want.view(np.uint8),
                                      err_msg=f"{n}: a write to the host array reached it")


def test_windows_go_into_an_image_in_one_pass(jax_backend):
    """col2im, the input's gradient and max pooling's gradient put their windows into the
    image as padded arrays, which XLA fuses into one pass. The reference's ``at(img)[...,
    rows, cols].add(part)`` became an update of the whole image a window (a
    dynamic-update-slice, or a scatter for strided windows, which XLA's CPU code runs an
    element at a time): DeepConvNet's compiled step took 1.3x as long on this project's
    CPU (docs/performance.md, "JAX"). The values are the reference's (the test above)."""
    import jax
    rng = np.random.default_rng(8)

    def arr(*shape):
        return jax_backend.asarray(rng.standard_normal(shape).astype(np.float32))
    ops = backends.ops_for(arr(1))
    x, W, b = arr(2, 3, 8, 8), arr(4, 3, 3, 3), arr(4)
    col = ops.conv(x, W, b, 1, 1, 8, 8)[1]
    arg = ops.max_pool(x, 2, 2, 2, 0, 4, 4)[1]
    arg3 = ops.max_pool(x, 3, 3, 2, 1, 4, 4)[1]
    calls = {"conv_grad": (lambda d: ops.conv_grad(d, x, W, col, 1, 1), arr(2, 4, 8, 8)),
             "col2im": (lambda c: ops.col2im(c, x.shape, 3, 3, 2, 1, 4, 4), arr(27, 32)),
             "max_pool_grad": (lambda d: ops.max_pool_grad(d, arg, x, 2, 2, 2, 0),
                               arr(2, 3, 4, 4)),
             "overlapping max_pool_grad": (lambda d: ops.max_pool_grad(d, arg3, x, 3, 3, 2, 1),
                                           arr(2, 3, 4, 4))}
    for name, (call, arg_in) in calls.items():
        text = jax.jit(call).lower(arg_in).compile().as_text()
        for update in ("scatter(", "dynamic-update-slice("):
            assert update not in text, (name, update)


def test_an_optimizers_step_called_by_name_is_the_step_called_by_position(jax_backend):
    """The wing's optimizer steps take their numbers as constants of the computation or as
    traced inputs (``_constants_where_numbers``); arguments named, in any order, are put
    in their places first: Adam's step with ``beta2`` named before ``beta1`` is the
    positional one, with Python numbers and with arrays for them alike."""
    ops = backends.ops_for(backends.to_device(np.zeros(1)))
    rng = np.random.default_rng(0)
    p, g, m, v = (backends.to_device(rng.random((3, 4))) for _ in range(4))
    lr_t = backends.to_device(np.array(0.01))
    for b1, b2 in ((0.9, 0.999), (backends.to_device(np.array(0.9)),
                                  backends.to_device(np.array(0.999)))):
        positional = ops.adam_update(p, g, m, v, lr_t, b1, b2)
        named = ops.adam_update(p, g, m, v, lr_t=lr_t, beta2=b2, beta1=b1)
        for a, b in zip(positional, named):
            np.testing.assert_array_equal(to_host(a), to_host(b))
