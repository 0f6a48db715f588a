"""models/two_layer_net.py: structure, seeding, backprop vs numerical, training."""

import numpy as np
import pytest

import backends
from framework.layers import Affine, Relu, SoftmaxWithLoss
from models import TwoLayerNet
from tests.conftest import to_host, one_hot


def batch(xp, n=5, d=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return backends.to_device(rng.random((n, d))), backends.to_device(rng.integers(0, classes, n))


def test_structure_follows_the_book(backend):
    net = TwoLayerNet(784, 50, 10)
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    assert [p.shape for p in net.params.values()] == [(784, 50), (50,), (50, 10), (10,)]
    assert all(backends.dtype_name(p.dtype) == "float32" for p in net.params.values())
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]
    assert [type(v) for v in net.layers.values()] == [Affine, Relu, Affine]
    assert isinstance(net.last_layer, SoftmaxWithLoss) and net.lastLayer is net.last_layer
    assert net.layers["Affine1"].W is net.params["W1"]
    assert backends.backend_of(net.params["W1"]) == backend
    assert to_host(net.params["b1"]).sum() == 0.0
    assert 0.009 < float(to_host(net.params["W1"]).std()) < 0.011  # weight_init_std


def test_same_seed_same_weights_on_every_backend(backend):
    a = TwoLayerNet(20, 8, 3, seed=7)
    backends.use("numpy")
    b = TwoLayerNet(20, 8, 3, seed=7)
    c = TwoLayerNet(20, 8, 3, seed=8)
    np.testing.assert_array_equal(to_host(a.params["W1"]), b.params["W1"])
    assert not np.array_equal(b.params["W1"], c.params["W1"])


@pytest.mark.parametrize("labels", ["int", "one_hot"])
def test_backprop_matches_numerical_gradient(xp, labels):
    net = TwoLayerNet(12, 6, 4, dtype="float64", seed=3, weight_init_std=0.5)
    x, t = batch(xp)
    if labels == "one_hot":
        t = one_hot(t, 4)
    num = net.numerical_gradient(x, t)
    grad = net.gradient(x, t)
    for key in ("W1", "b1", "W2", "b2"):
        a, b = to_host(grad[key]), to_host(num[key])
        rel = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-3 * np.abs(b).max())
        assert rel.max() < 1e-6, key


def test_predict_loss_accuracy(xp):
    net = TwoLayerNet(12, 6, 4, seed=0)
    x, t = batch(xp, n=7)
    assert net.predict(x).shape == (7, 4)
    assert backends.dtype_name(net.predict(x).dtype) == "float32"  # float64 input: cast per batch
    # untrained, the loss is about log(4)
    assert float(net.loss(x, t)) == pytest.approx(np.log(4), abs=0.05)
    scores = to_host(net.predict(x))
    expected = float((scores.argmax(axis=1) == to_host(t)).mean())
    acc = net.accuracy(x, t)
    assert isinstance(acc, float) and acc == pytest.approx(expected)
    assert net.accuracy(x, one_hot(t, 4)) == acc  # one-hot labels too
    assert net.accuracy(x, t, batch_size=3) == acc  # evaluated in chunks


def test_in_place_updates_train_the_network(xp):
    net = TwoLayerNet(12, 16, 4, seed=0, weight_init_std=0.1)
    x, t = batch(xp, n=32)
    first = float(net.loss(x, t))
    for _ in range(300):
        grads = net.gradient(x, t)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.5 * grads[key]
    assert float(net.loss(x, t)) < 0.5 * first
    assert net.accuracy(x, t) > 0.9


def test_non_float_dtype_is_refused(backend):
    with pytest.raises(ValueError, match="dtype must be a floating type, got int32"):
        TwoLayerNet(4, 3, 2, dtype="int32")
    # complex numbers are no real floating type: the layers' max and comparisons need order
    with pytest.raises(ValueError, match="dtype must be a floating type, got complex64"):
        TwoLayerNet(4, 3, 2, dtype="complex64")


@pytest.mark.parametrize("std, message", [
    ("he ", r"weight_init_std='he ' is not a known initialisation"),  # was NumPy's UFuncTypeError
    (-0.01, r"weight_init_std must be a positive number or a name, got -0.01"),
    (None, r"weight_init_std must be a positive number or a name, got None"),
    (float("inf"), r"weight_init_std must be a positive number or a name, got inf"),
    (float("nan"), r"weight_init_std must be a positive number or a name, got nan")])
def test_a_weight_scale_is_checked_as_the_other_networks_check_it(std, message):
    with pytest.raises(ValueError, match=rf"^TwoLayerNet: {message}"):
        TwoLayerNet(4, 3, 2, weight_init_std=std)


def test_he_and_xavier_scales_are_taken_by_name():
    net = TwoLayerNet(400, 100, 10, weight_init_std="he", seed=0)
    assert np.std(to_host(net.params["W1"])) == pytest.approx((2 / 400) ** 0.5, rel=0.05)
    assert np.std(to_host(net.params["W2"])) == pytest.approx((2 / 100) ** 0.5, rel=0.05)
    book = TwoLayerNet(400, 100, 10, seed=0)  # the book's 0.01 is still the default
    assert np.std(to_host(book.params["W1"])) == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("float64", 1e-10)])
def test_cpu_gpu_parity(dtype, rtol):
    if "cupy" not in backends.available():
        pytest.skip("cupy backend not usable here: parity needs a GPU")
    with backends.kept():
        rng = np.random.default_rng(5)
        x, t = rng.random((100, 784)), rng.integers(0, 10, 100)
        results = {}
        for name in ("numpy", "cupy"):
            b = backends.use(name)
            net = TwoLayerNet(784, 50, 10, dtype=dtype, seed=11, weight_init_std=0.1)
            xd, td = b.asarray(x, dtype), b.asarray(t)
            grads = net.gradient(xd, td)
            results[name] = (float(net.loss(xd, td)), {k: to_host(g) for k, g in grads.items()})
        assert results["cupy"][0] == pytest.approx(results["numpy"][0], rel=rtol)
        for key, g in results["numpy"][1].items():
            scale = np.abs(g).max()
            np.testing.assert_allclose(results["cupy"][1][key], g, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("labels", ["int", "one_hot"])
def test_vectorised_numerical_gradient_equals_the_elementwise_definition(xp, labels):
    net = TwoLayerNet(30, 7, 5, dtype="float64", seed=4, weight_init_std=0.3)
    rng = np.random.default_rng(6)
    x, t = backends.to_device(rng.random((3, 30))), backends.to_device([4, 0, 2])
    if labels == "one_hot":
        t = one_hot(t, 5)
    fast = net.numerical_gradient(x, t)
    slow = net.numerical_gradient_elementwise(x, t)
    assert list(fast) == ["W1", "b1", "W2", "b2"]
    for key in slow:
        np.testing.assert_allclose(to_host(fast[key]), to_host(slow[key]), rtol=0, atol=1e-9)


def test_numerical_gradient_takes_image_shaped_input(xp):
    net = TwoLayerNet(2 * 3 * 3, 4, 3, dtype="float64", seed=2, weight_init_std=0.5)
    rng = np.random.default_rng(1)
    x, t = backends.to_device(rng.random((2, 2, 3, 3))), backends.to_device([0, 2])
    fast, slow = net.numerical_gradient(x, t), net.numerical_gradient_elementwise(x, t)
    for key in slow:
        np.testing.assert_allclose(to_host(fast[key]), to_host(slow[key]), rtol=0, atol=1e-9)
    grads = net.gradient(x, t)
    np.testing.assert_allclose(to_host(grads["W1"]), to_host(fast["W1"]), rtol=1e-6, atol=1e-9)


def test_fast_step_computes_what_the_books_layers_compute(backend):
    """Integer labels, fused softmax-cross-entropy and the skipped input gradient change
    the cost of a step, not its result: compare with the book's code, float32."""
    from scripts.benchmark import book
    net = TwoLayerNet(784, 50, 10, seed=9, weight_init_std=0.1)
    ref = book.TwoLayerNet(784, 50, 10, weight_init_std=0.1, dtype=np.float32, seed=9)
    for key, value in ref.params.items():
        np.testing.assert_array_equal(to_host(net.params[key]), value)  # same draw
    rng = np.random.default_rng(0)
    x = rng.random((100, 784), dtype=np.float32)
    t = rng.integers(0, 10, 100)
    grads = net.gradient(backend.asarray(x), backend.asarray(t))
    expected = ref.gradient(x, np.eye(10, dtype=np.float32)[t])
    # against the exact loss of the book's scores (its own log(y + 1e-7) lowers each
    # sample's by about 1e-7 / y, 1.4e-6 here): float32's rounding apart
    scores = ref.predict(x).astype(np.float64)
    shifted = scores - scores.max(axis=1, keepdims=True)
    exact = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(100), t])
    assert float(net.last_layer.loss) == pytest.approx(exact, abs=1e-6)
    assert float(ref.lastLayer.loss) == pytest.approx(exact, abs=3e-6)
    for key in expected:
        np.testing.assert_allclose(to_host(grads[key]), expected[key], rtol=1e-4,
                                   atol=1e-5 * np.abs(expected[key]).max())


@pytest.mark.parametrize("seed", [-1, 1.5, "a", True, np.random.default_rng(0)])
def test_a_seed_that_is_not_a_non_negative_integer_is_named(seed):
    """A generator's message named ``[Generator(...), 1]``, the dropout stream's seed."""
    with pytest.raises(ValueError, match=r"^TwoLayerNet: seed=.*: expected None or a "
                                         r"non-negative integer$"):
        TwoLayerNet(4, 3, 2, seed=seed)
    TwoLayerNet(4, 3, 2, seed=np.int64(3))  # NumPy's integers are integers
