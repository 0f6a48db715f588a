"""Every network on every Array API backend: the same gradients, masks, training and checkpoints
as on NumPy (models/, through framework/ and backends/ops.py's standard operations).

Each test runs the NumPy reference and one other backend here: array-api-strict on its
default device and on its second one (``device1``), PyTorch's CPU tensors where PyTorch
is installed (it is not in the test extra: those cases skip, saying so), and JAX's
arrays (the training runs through the compiled step there).
"""

import numpy as np
import pytest

import backends
from framework.testing import check_parity
from framework.testing.plugin import unusable
from framework.trainer import Trainer
from models import DeepConvNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from tests.conftest import to_host

OTHERS = [("array_api_strict", None), ("array_api_strict", "device1"), ("torch", "cpu"),
          ("jax", None)]
IDS = ["strict", "strict-device1", "torch-cpu", "jax"]
RNG = np.random.default_rng(21)

SMALL_CONV = {"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 1}
NETS = {
    "two-layer": (lambda dtype: TwoLayerNet(20, 7, 3, dtype=dtype, seed=1, weight_init_std=0.5),
                  (6, 20)),
    "extend": (lambda dtype: MultiLayerNetExtend(20, [8, 6], 3, use_batchnorm=True,
                                                 use_dropout=True, dropout_ration=0.3,
                                                 weight_decay_lambda=0.01, dtype=dtype, seed=2),
               (6, 20)),
    "simple-conv": (lambda dtype: SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=6,
                                                output_size=3, dtype=dtype, seed=3),
                    (4, 1, 8, 8)),
    "deep-conv": (lambda dtype: DeepConvNet((1, 8, 8), *[dict(SMALL_CONV)] * 6, hidden_size=5,
                                            output_size=3, dtype=dtype, seed=4), (3, 1, 8, 8)),
}


@pytest.mark.parametrize("other", OTHERS, ids=IDS)
@pytest.mark.parametrize("net", list(NETS))
def test_gradients_equal_numpys_in_float64(net, other):
    """Dropout draws the same masks, batch norm the same statistics: the gradient is NumPy's."""
    make, shape = NETS[net]
    x, t = RNG.standard_normal(shape), RNG.integers(0, 3, shape[0])

    def gradient(x, t):
        network = make("float64")
        grads = network.gradient(x, t)
        for key, g in grads.items():  # results live on the backend, in its namespace
            assert backends.backend_of(g) == backends.current(), key
        return {"loss": network.last_loss, **grads}
    check_parity(gradient, x, t, between=("numpy", other), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("other", OTHERS, ids=IDS)
def test_the_numerical_gradient_agrees_on_every_backend(other):
    make, shape = NETS["extend"]
    x, t = RNG.standard_normal(shape), RNG.integers(0, 3, shape[0])
    check_parity(lambda x, t: make("float64").numerical_gradient(x, t), x, t,
                 between=("numpy", other), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("other", OTHERS, ids=IDS)
@pytest.mark.parametrize("net", ["extend", "simple-conv"])
def test_a_short_training_run_gives_numpys_losses(net, other):
    make, shape = NETS[net]
    x = RNG.random((40,) + shape[1:]).astype(np.float32)
    t = RNG.integers(0, 3, 40)

    def train(x, t):
        network = make(None)
        trainer = Trainer(network, x, t, x[:10, ...], t[:10, ...], epochs=2, mini_batch_size=8,
                          optimizer="Adam", optimizer_param={"lr": 0.01}, verbose=False,
                          seed=5)
        trainer.train()
        return np.asarray(trainer.train_loss_list), trainer.test_acc_list
    (want, want_acc), (got, got_acc) = check_parity(train, x, t, between=("numpy", other),
                                                    rtol=1e-3, atol=1e-5)
    assert want.shape == (10,)


EVERY = [("numpy", None), ("array_api_strict", None), ("array_api_strict", "device1"),
         ("torch", "cpu"), ("jax", None)]
PAIRS = [(a, b) for a in EVERY for b in EVERY if a != b]


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{a[1] or a[0]}-to-{b[1] or b[0]}" for a, b in PAIRS])
def test_checkpoints_cross_between_backends(tmp_path, pair):
    """A network trained (one step) on one backend predicts the same after loading on another."""
    for name, _ in pair:
        usable, why = backends.backend_class(name).usable()
        if not usable:
            pytest.skip(unusable(name, why))
    make, shape = NETS["extend"]
    x, t = RNG.random(shape), RNG.integers(0, 3, shape[0])
    path = str(tmp_path / "net.npz")
    (source, source_device), (target, target_device) = pair
    backends.use(source, device=source_device)
    trained = make(None)
    trained.gradient(backends.to_device(x, "float32"), backends.to_device(t))  # moves the state
    want = to_host(trained.predict(backends.to_device(x, "float32")))
    trained.save_params(path)
    backends.use(target, device=target_device)
    loaded = make(None)
    loaded.load_params(path)
    got = to_host(loaded.predict(backends.to_device(x, "float32")))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for key, value in trained.state().items():
        np.testing.assert_array_equal(to_host(loaded.state()[key]), to_host(value), err_msg=key)


def test_mixing_namespaces_or_devices_is_refused_by_name():
    backends.use("array_api_strict")
    net = TwoLayerNet(20, 7, 3, seed=1)
    with pytest.raises(TypeError, match=r"TwoLayerNet.predict: arrays from different backends "
                                        r"\(x is numpy, params is array_api_strict on "
                                        r".*CPU_DEVICE"):
        net.predict(np.ones((2, 20), dtype=np.float32))
    elsewhere = backends.use("array_api_strict", device="device1").asarray(np.ones((2, 20)),
                                                                          "float32")
    with pytest.raises(TypeError, match=r"x is array_api_strict on .*device1.*params is "
                                        r"array_api_strict on .*CPU_DEVICE"):
        net.predict(elsewhere)


@pytest.mark.filterwarnings("ignore:You are comparing a array_api_strict dtype")  # on the way
@pytest.mark.parametrize("method", ["loss", "gradient", "accuracy"])
def test_the_books_loop_with_numpy_batches_for_a_network_elsewhere_is_told_so(method):
    """The book's loop on PyTorch (or any backend but NumPy) feeds the NumPy batches of
    load_mnist: predict said so, but loss, gradient and accuracy met the library's
    "Cannot interpret 'array_api_strict.float32' as a data type"."""
    backends.use("array_api_strict")
    net = TwoLayerNet(20, 7, 3, seed=1)
    x, t = np.ones((2, 20), dtype=np.float32), np.array([0, 1])
    with pytest.raises(TypeError) as info:
        getattr(net, method)(x, t)
    assert str(info.value).startswith(
        f"TwoLayerNet.{method}: arrays from different backends (x is numpy, t is numpy, params "
        f"is array_api_strict on ")
    assert info.value.__suppress_context__  # the library's words not shown above ours


def test_a_device_without_float64_trains_in_float32_and_says_where_to_check():
    """array-api-strict's no_float64 device stands in for Apple's MPS."""
    backends.use("array_api_strict", device="no_float64")
    with pytest.raises(TypeError, match="has no float64.*run float64 checks such as "
                                        "gradient_check on the CPU"):
        TwoLayerNet(20, 7, 3, dtype="float64")
    net = MultiLayerNetExtend(20, [8], 3, use_dropout=True, seed=2)
    x, t = RNG.random((6, 20)), RNG.integers(0, 3, 6)
    sent = backends.to_device(x)  # NumPy's float64 goes there as float32 (MPS has none)
    assert backends.dtype_name(sent.dtype) == "float32"
    np.testing.assert_array_equal(backends.to_numpy(sent), x.astype(np.float32))
    grads = net.gradient(sent, backends.to_device(t))
    assert backends.dtype_name(grads["W1"].dtype) == "float32"
    assert np.isfinite(float(net.last_loss))
