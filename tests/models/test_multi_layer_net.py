"""models/multi_layer_net.py: the book's deep nets on the shared walk, on every backend."""

import re

import numpy as np
import pytest

import backends
from backends.registry import REGISTRY
from framework import checkpoint
from framework.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid
from framework.testing import check_model
from models import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from tests.conftest import to_host, one_hot

RNG = np.random.default_rng(11)


def batch(xp, n=8, d=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return backends.to_device(rng.random((n, d))), backends.to_device(rng.integers(0, classes, n))


def test_structure_follows_the_book(backend):
    net = MultiLayerNetExtend(784, [100, 100, 100], 10, use_batchnorm=True, use_dropout=True)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4",
                                "gamma1", "beta1", "gamma2", "beta2", "gamma3", "beta3"]
    assert list(net.layers) == ["Affine1", "BatchNorm1", "Activation_function1", "Dropout1",
                                "Affine2", "BatchNorm2", "Activation_function2", "Dropout2",
                                "Affine3", "BatchNorm3", "Activation_function3", "Dropout3",
                                "Affine4"]
    kinds = [Affine, BatchNormalization, Relu, Dropout] * 3 + [Affine]
    assert [type(layer) for layer in net.layers.values()] == kinds
    assert net.layers["BatchNorm2"].gamma is net.params["gamma2"]
    assert all(backends.dtype_name(p.dtype) == "float32" for p in net.params.values())
    assert backends.backend_of(net.layers["Dropout1"].counter) == backend
    assert list(net.state()) == [f"{layer}/{name}" for i in (1, 2, 3)
                                 for layer, names in ((f"BatchNorm{i}", ("running_mean", "running_var")),
                                                      (f"Dropout{i}", ("key", "counter")))
                                 for name in names]
    plain = MultiLayerNet(20, [], 3, activation="sigmoid")  # softmax regression
    assert list(plain.params) == ["W1", "b1"] and list(plain.layers) == ["Affine1"]
    assert [type(v) for v in MultiLayerNet(5, [4], 3, activation="Sigmoid").layers.values()] == \
        [Affine, Sigmoid, Affine]


@pytest.mark.parametrize("init, expected", [("relu", np.sqrt(2 / 1000)), ("he", np.sqrt(2 / 1000)),
                                            ("sigmoid", np.sqrt(1 / 1000)),
                                            ("xavier", np.sqrt(1 / 1000)), (0.01, 0.01)])
def test_init_scales_are_what_their_names_say(init, expected):
    net = MultiLayerNet(1000, [400], 10, weight_init_std=init, seed=0)
    std = float(to_host(net.params["W1"]).std())
    assert std == pytest.approx(expected, rel=0.02)
    fan_in_2 = {"relu": np.sqrt(2 / 400), "he": np.sqrt(2 / 400)}.get(
        init, np.sqrt(1 / 400) if isinstance(init, str) else 0.01)
    assert float(to_host(net.params["W2"]).std()) == pytest.approx(fan_in_2, rel=0.05)
    if isinstance(init, str):  # a name in any case (as activation's), the same network
        shouting = MultiLayerNet(1000, [400], 10, weight_init_std=init.upper(), seed=0)
        np.testing.assert_array_equal(to_host(shouting.params["W1"]), to_host(net.params["W1"]))


def test_same_seed_same_network_on_every_backend(backend):
    a = MultiLayerNetExtend(30, [8, 8], 3, use_dropout=True, seed=5)
    backends.use("numpy")
    b = MultiLayerNetExtend(30, [8, 8], 3, use_dropout=True, seed=5)
    c = MultiLayerNet(30, [8, 8], 3, seed=5)
    for key in c.params:  # dropout's keys come from a stream of their own
        np.testing.assert_array_equal(to_host(a.params[key]), b.params[key])
        np.testing.assert_array_equal(b.params[key], c.params[key])
    np.testing.assert_array_equal(to_host(a.layers["Dropout1"].key), b.layers["Dropout1"].key)
    # and the same run from one xpnet to the next (the fingerprints): seed 5's dropout keys,
    # pinned, since drawing them from another stream changes every seeded run with dropout
    assert [int(b.layers[f"Dropout{i}"].key[0]) for i in (1, 2)] == \
        [4608219070314691254, 4731528989051079784]


def test_two_layer_net_is_the_one_hidden_layer_case(xp):
    two = TwoLayerNet(12, 6, 4, weight_init_std=0.3, seed=2, dtype="float64")
    multi = MultiLayerNet(12, [6], 4, weight_init_std=0.3, seed=2, dtype="float64")
    x, t = batch(xp)
    for key in two.params:
        np.testing.assert_array_equal(to_host(two.params[key]), to_host(multi.params[key]))
    g2, gm = two.gradient(x, t), multi.gradient(x, t)
    for key in g2:
        np.testing.assert_array_equal(to_host(g2[key]), to_host(gm[key]))


CASES = {
    "relu": dict(),
    "sigmoid": dict(activation="sigmoid", weight_init_std="xavier"),
    "weight decay": dict(weight_decay_lambda=0.3),
    "batch norm": dict(use_batchnorm=True),
    "dropout": dict(use_dropout=True, dropout_ration=0.3),
    "everything": dict(use_batchnorm=True, use_dropout=True, weight_decay_lambda=0.1),
}


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_numerical_gradient(xp, case):
    net = MultiLayerNetExtend(12, [10, 7], 4, dtype="float64", seed=3, **CASES[case])
    x, t = batch(xp, n=8)
    report = check_model(net, x, t)
    assert len(report) == len(net.params)


@pytest.mark.parametrize("labels", ["int", "one_hot"])
def test_vectorised_numerical_gradient_equals_the_elementwise_definition(xp, labels):
    net = MultiLayerNetExtend(10, [6, 5], 3, dtype="float64", seed=4, activation="sigmoid",
                              use_batchnorm=True, use_dropout=True, weight_decay_lambda=0.2)
    x, t = batch(xp, n=4, d=10, classes=3)
    if labels == "one_hot":
        t = one_hot(t, 3)
    state = {k: to_host(v).copy() for k, v in net.state().items()}
    fast = net.numerical_gradient(x, t)
    slow = net.numerical_gradient_elementwise(x, t)
    for key in net.params:
        np.testing.assert_allclose(to_host(fast[key]), to_host(slow[key]), rtol=0, atol=1e-9,
                                   err_msg=key)
    for key, value in net.state().items():  # no running average moved, no generator advanced
        np.testing.assert_array_equal(to_host(value), state[key], err_msg=key)


def test_numerical_gradient_of_the_issue_net_is_fast():
    import time
    net = MultiLayerNetExtend(784, [100] * 3, 10, use_batchnorm=True, dtype="float64", seed=0)
    x, t = batch(np, n=3, d=784, classes=10)
    start = time.perf_counter()
    grads = net.numerical_gradient(x, t)
    assert time.perf_counter() - start < 60  # element by element it takes many minutes
    # backends.size: a PyTorch tensor's size is a method
    assert sum(map(backends.size, grads.values())) == sum(map(backends.size, net.params.values()))


@pytest.mark.parametrize("kind, options", [(MultiLayerNet, {}),
                                           (MultiLayerNetExtend, {"use_batchnorm": True})])
def test_weight_decay_adds_the_books_penalty(xp, kind, options):
    """On the weight matrices only, as the book's: batch norm's gamma and beta, and every
    bias, have no penalty and no lambda * p in their gradients."""
    lam = 0.25
    plain = kind(12, [5, 5], 4, dtype="float64", seed=1, **options)
    decayed = kind(12, [5, 5], 4, dtype="float64", seed=1, weight_decay_lambda=lam, **options)
    x, t = batch(xp)
    penalty = 0.5 * lam * sum(float((to_host(decayed.params[k]) ** 2).sum())
                              for k in ("W1", "W2", "W3"))
    assert float(decayed.loss(x, t)) == pytest.approx(float(plain.loss(x, t)) + penalty, rel=1e-12)
    g0, g1 = plain.gradient(x, t), decayed.gradient(x, t)
    for key in g0:
        extra = lam * to_host(decayed.params[key]) if key.startswith("W") else 0
        np.testing.assert_allclose(to_host(g1[key]), to_host(g0[key]) + extra, rtol=1e-12,
                                   atol=1e-15)
    assert float(decayed.last_loss) == pytest.approx(float(plain.last_loss) + penalty, rel=1e-12)


def test_inference_uses_running_averages_and_scales_dropout(xp):
    net = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, use_dropout=True,
                              dropout_ration=0.25, dtype="float64", seed=0)
    x, _ = batch(xp, n=10, d=6)
    for _ in range(3):
        net.predict(x, train_flg=True)  # moves the running averages
    bn = net.layers["BatchNorm1"]
    h = to_host(x) @ to_host(net.params["W1"]) + to_host(net.params["b1"])
    h = (h - to_host(bn.running_mean)) / np.sqrt(to_host(bn.running_var) + 1e-6)
    h = np.maximum(h * to_host(bn.gamma) + to_host(bn.beta), 0) * 0.75
    expected = h @ to_host(net.params["W2"]) + to_host(net.params["b2"])
    np.testing.assert_allclose(to_host(net.predict(x)), expected, rtol=1e-12)
    assert not np.allclose(to_host(net.predict(x, train_flg=True)), expected)


def test_training_reduces_the_loss(xp):
    net = MultiLayerNetExtend(12, [16, 16], 4, use_batchnorm=True, use_dropout=True,
                              dropout_ration=0.1, seed=0)
    x, t = batch(xp, n=64, seed=1)
    first = float(net.loss(x, t))
    for _ in range(300):
        grads = net.gradient(x, t)
        for key in net.params:
            net.params[key] -= 0.1 * grads[key]
    assert float(net.loss(x, t)) < 0.5 * first
    assert net.accuracy(x, t) > 0.8


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_size=0), "input_size must be at least 1, got 0"),
    (dict(hidden_size_list=[10, -1]), r"hidden_size_list\[1\] must be at least 1, got -1"),
    (dict(hidden_size_list=[10, 2.5]), r"hidden_size_list\[1\] must be a positive integer"),
    (dict(hidden_size_list=10), "hidden_size_list must be a list of layer sizes"),
    (dict(output_size=0), "output_size must be at least 1"),
    (dict(activation="tanh"), "activation='tanh'; expected one of 'relu', 'sigmoid'"),
    (dict(weight_init_std="glorot"), "weight_init_std='glorot' is not a known initialisation"),
    (dict(weight_init_std=-0.1), "weight_init_std must be a positive number or a name"),
    (dict(weight_init_std=0), "weight_init_std must be a positive number or a name, got 0"),
    (dict(weight_decay_lambda=-1), "weight_decay_lambda must be 0 or more"),
    (dict(weight_decay_lambda="0.1"), "weight_decay_lambda must be 0 or more, got '0.1'"),
    (dict(weight_decay_lambda=True), "weight_decay_lambda must be 0 or more, got True"),
    (dict(dropout_ration=1.0), r"dropout_ration must lie in \[0, 1\), got 1.0"),
    (dict(dropout_ration=False), r"dropout_ration must lie in \[0, 1\), got False"),  # not 0
    (dict(weight_decay_lambda=float("inf")), "weight_decay_lambda must be 0 or more, got inf"),
    (dict(dtype="int32"), "dtype must be a floating type, got int32"),
    # a string is true: "no" would have switched batch norm on
    (dict(use_batchnorm="no"), "use_batchnorm must be True or False, got 'no'"),
    (dict(use_dropout=None), "use_dropout must be True or False, got None"),
    (dict(use_dropout=2), "use_dropout must be True or False, got 2"),  # true, so dropout
    (dict(input_size=True), "input_size must be a positive integer, got True"),  # a size 1
])
def test_nonsense_is_refused(backend, kwargs, message):
    args = dict(input_size=8, hidden_size_list=[4], output_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        MultiLayerNetExtend(**args)


def test_two_layer_net_refuses_empty_layers(backend):
    with pytest.raises(ValueError, match="TwoLayerNet: hidden_size must be at least 1, got 0"):
        TwoLayerNet(784, 0, 10)


def test_checkpoint_round_trip_with_the_running_averages(backend, tmp_path):
    net = MultiLayerNetExtend(8, [6, 6], 3, use_batchnorm=True, use_dropout=True, seed=0)
    x, t = batch(backend.xp, n=20, d=8, classes=3)
    for _ in range(5):
        grads = net.gradient(x, t)
        for key in net.params:
            net.params[key] -= 0.1 * grads[key]
    path = tmp_path / "net.npz"
    net.save_params(path)
    fresh = MultiLayerNetExtend(8, [6, 6], 3, use_batchnorm=True, use_dropout=True, seed=1)
    fresh.load_params(path)
    np.testing.assert_array_equal(to_host(fresh.predict(x)), to_host(net.predict(x)))
    for key, value in net.state().items():
        np.testing.assert_array_equal(to_host(fresh.state()[key]), to_host(value))
    np.testing.assert_array_equal(to_host(fresh.predict(x, train_flg=True)),
                                  to_host(net.predict(x, train_flg=True)))  # same next mask


def test_a_checkpoint_loads_whatever_scale_drew_the_first_weights(tmp_path):
    """The initial scale is no part of a trained network: one built with 'relu' (the
    default) refused a checkpoint of one built with 'he', the same scale by another name.
    What does change the network is still refused, the differing argument named."""
    path = str(tmp_path / "net.npz")
    trained = MultiLayerNetExtend(8, [6], 3, weight_init_std="he", use_dropout=True, seed=1)
    trained.save_params(path)
    for init in ("relu", 0.01, "xavier"):
        net = MultiLayerNetExtend(8, [6], 3, weight_init_std=init, use_dropout=True, seed=2)
        net.load_params(path)
        np.testing.assert_array_equal(to_host(net.params["W1"]), to_host(trained.params["W1"]))
    other = MultiLayerNetExtend(8, [6], 3, use_dropout=True, dropout_ration=0.2)
    with pytest.raises(checkpoint.CheckpointError, match=r"\(dropout_ration: 0.5 there, 0.2 "
                                                          r"here\)$"):
        other.load_params(path)


def test_checkpoints_of_another_architecture_or_without_statistics_are_refused(backend, tmp_path):
    path = str(tmp_path / "net.npz")
    MultiLayerNetExtend(8, [6], 3, use_batchnorm=True).save_params(path)
    other = MultiLayerNetExtend(8, [6], 3)
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint is MultiLayerNetExtend"):
        other.load_params(path)
    meta, arrays = checkpoint.read(path)
    del arrays["state/BatchNorm1/running_var"]
    import json
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    net = MultiLayerNetExtend(8, [6], 3, use_batchnorm=True, seed=3)
    before = to_host(net.params["W1"]).copy()
    with pytest.raises(checkpoint.CheckpointError,
                       match="layer state BatchNorm1/running_var .* is missing"):
        net.load_params(path)
    np.testing.assert_array_equal(to_host(net.params["W1"]), before)  # nothing changed


def test_checkpoint_written_on_any_backend_predicts_the_same_on_numpy(backend, tmp_path):
    rng = np.random.default_rng(0)
    x, t = rng.random((20, 8)), rng.integers(0, 3, 20)  # on the host
    net = MultiLayerNetExtend(8, [6], 3, use_batchnorm=True, use_dropout=True, seed=0)
    for _ in range(3):  # batch norm's running averages move; dropout's generator draws
        net.gradient(backend.asarray(x), backend.asarray(t))
    net.save_params(tmp_path / "net.npz")
    backends.use("numpy")
    cpu = MultiLayerNetExtend(8, [6], 3, use_batchnorm=True, use_dropout=True, seed=9)
    cpu.load_params(tmp_path / "net.npz")
    np.testing.assert_allclose(cpu.predict(x), to_host(net.predict(backend.asarray(x))),
                               rtol=1e-5, atol=1e-6)


def test_arrays_of_another_backend_are_refused_by_name(backend):
    if backend.name == "numpy":
        pytest.skip("needs a network on a backend other than NumPy")
    net = MultiLayerNetExtend(8, [6], 3, use_batchnorm=True)
    where = REGISTRY.kind(net.params["W1"])
    with pytest.raises(TypeError, match=re.escape(
            f"MultiLayerNetExtend.predict: arrays from different backends (x is numpy, "
            f"params is {where}); move them to one backend first")):
        net.predict(np.zeros((2, 8), dtype=np.float32))


def test_the_switches_take_numpys_booleans_and_zero_or_one():
    for on, off in ((True, False), (np.bool_(True), np.bool_(False)), (1, 0)):
        net = MultiLayerNetExtend(8, [4], 3, use_batchnorm=on, use_dropout=off)
        assert net.config()["use_batchnorm"] is True and net.config()["use_dropout"] is False
        assert "BatchNorm1" in net.layers and "Dropout1" not in net.layers


def test_a_served_network_predicts_from_several_threads_at_once(xp):
    """One trained network, ``predict`` called by four threads at once on batches of
    different sizes (a served model): each gets the answer one thread alone would. Batch
    norm reshaped its output by the shape it had kept on itself, which another thread's
    pass had changed meanwhile: "cannot reshape array of size 540 into shape (34,30)"."""
    import threading
    net = MultiLayerNetExtend(20, [30, 30], 5, use_batchnorm=True, use_dropout=True, seed=0)
    rng = np.random.default_rng(0)
    xs = [backends.to_device(rng.random((int(n), 20)), "float32")
          for n in rng.choice([1, 7, 12, 30], 24)]
    want = [to_host(net.predict(x)) for x in xs]
    wrong, start = [], threading.Barrier(4, timeout=60)

    def serve(k):
        try:
            start.wait()
            for _ in range(10):
                for i in range(k, len(xs), 4):
                    if not np.array_equal(to_host(net.predict(xs[i])), want[i]):
                        wrong.append(i)
        except Exception as e:  # noqa: BLE001 (the thread's failure, for the assert)
            wrong.append(f"{type(e).__name__}: {e}")
    threads = [threading.Thread(target=serve, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
