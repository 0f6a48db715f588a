"""models/simple_convnet.py and models/deep_convnet.py: the book's networks on the shared walk."""

import numpy as np
import pytest

import backends
from framework.layers import Affine, Convolution, Dropout, Pooling, Relu
from framework.testing import check_model, check_parity
from framework.trainer import Trainer
from models import DeepConvNet, SimpleConvNet
from tests.conftest import to_host

RNG = np.random.default_rng(81)


def images(xp, n, dim, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return backends.to_device(rng.random((n,) + tuple(dim))), backends.to_device(rng.integers(0, classes, n))


def small(i):
    return {"filter_num": 3 + i % 2, "filter_size": 3, "pad": 1 if i != 3 else 2, "stride": 1}


def test_simple_convnet_follows_the_book(backend):
    net = SimpleConvNet()
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [tuple(p.shape) for p in net.params.values()] == [
        (30, 1, 5, 5), (30,), (4320, 100), (100,), (100, 10), (10,)]
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert [type(v) for v in net.layers.values()] == [Convolution, Relu, Pooling, Affine, Relu,
                                                      Affine]
    assert net.layers["Conv1"].W is net.params["W1"] and not net.layers["Conv1"].input_grad
    assert 0.0095 < float(to_host(net.params["W2"]).std()) < 0.0105


def test_deep_convnet_follows_the_book(backend):
    net = DeepConvNet()
    assert list(net.params) == [f"{p}{i}" for i in range(1, 9) for p in "Wb"]
    assert tuple(net.params["W1"].shape) == (16, 1, 3, 3)
    assert tuple(net.params["W4"].shape) == (32, 32, 3, 3)
    assert tuple(net.params["W7"].shape) == (64 * 4 * 4, 50)  # the book's 64*4*4 for 28x28
    assert tuple(net.params["W8"].shape) == (50, 10)
    assert list(net.layers) == ["Conv1", "Relu1", "Conv2", "Relu2", "Pool1", "Conv3", "Relu3",
                                "Conv4", "Relu4", "Pool2", "Conv5", "Relu5", "Conv6", "Relu6",
                                "Pool3", "Affine1", "Relu7", "Dropout1", "Affine2", "Dropout2"]
    assert isinstance(net.layers["Dropout2"], Dropout)  # after the last Affine, as the book
    # He: sqrt(2 / fan_in), fan_in 16 * 3 * 3 for W2
    assert float(to_host(net.params["W2"]).std()) == pytest.approx(np.sqrt(2 / 144), rel=0.05)
    x, _ = images(backend.xp, 2, (1, 28, 28))
    assert net.predict(x).shape == (2, 10)


def test_simple_convnet_gradient_matches_numerical_gradient(xp):
    net = SimpleConvNet(input_dim=(2, 8, 7), conv_param={"filter_num": 3, "filter_size": 3,
                                                         "pad": 1, "stride": 1},
                        hidden_size=6, output_size=4, weight_init_std=0.3, dtype="float64",
                        seed=1)
    x, t = images(xp, 3, (2, 8, 7), classes=4)
    report = check_model(net, x, t)
    assert list(report) == ["W1", "b1", "W2", "b2", "W3", "b3"]


def test_deep_convnet_gradient_matches_numerical_gradient(xp):
    if backends.current().name == "jax":  # 34 s of eager dispatches, the slowest test of all
        pytest.skip("on JAX, DeepConvNet's float64 gradients are held to NumPy's to 1e-10 "
                    "(tests/models/test_parity.py), and NumPy's to this check")
    net = DeepConvNet(input_dim=(1, 8, 8), **{f"conv_param_{i}": small(i) for i in range(1, 7)},
                      hidden_size=6, output_size=3, dtype="float64", seed=2)
    x, t = images(xp, 2, (1, 8, 8), classes=3)
    report = check_model(net, x, t)
    assert len(report) == 16


def test_vectorised_numerical_gradient_equals_the_elementwise_definition(xp):
    net = SimpleConvNet(input_dim=(1, 6, 6), conv_param={"filter_num": 2, "filter_size": 3,
                                                         "pad": 1, "stride": 2},
                        hidden_size=4, output_size=3, weight_init_std=0.5, dtype="float64",
                        seed=3)
    x, t = images(xp, 2, (1, 6, 6), classes=3)
    fast, slow = net.numerical_gradient(x, t), net.numerical_gradient_elementwise(x, t)
    for key in slow:
        np.testing.assert_allclose(to_host(fast[key]), to_host(slow[key]), rtol=0, atol=1e-9)


def test_numerical_gradient_of_the_books_simple_convnet_is_usable():
    """ch07/gradient_check.py's use: the book's net on a 10x10 input, one sample.

    He-scaled weights: with the book's std 0.01 every output of a pooling
    window lies within a few 1e-4 of the others, and h = 1e-4 then moves
    which one wins (a kink, where no central difference is the gradient).
    """
    import time
    net = SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 10, "filter_size": 3,
                                                           "pad": 0, "stride": 1},
                        hidden_size=10, output_size=10, weight_init_std="he", dtype="float64",
                        seed=0)
    x, t = images(np, 1, (1, 10, 10))
    start = time.perf_counter()
    grads = net.numerical_gradient(x, t)
    assert time.perf_counter() - start < 30
    assert set(grads) == set(net.params)
    check_model(net, x, t)
    column = backends.to_device(np.array([1]).reshape((1, 1)))  # the book's T, one label
    label = backends.to_device(np.array([1]))
    for key, g in net.numerical_gradient(x, column).items():
        np.testing.assert_allclose(to_host(g), to_host(net.numerical_gradient(x, label)[key]),
                                   rtol=1e-12, err_msg=key)
    check_model(net, x, column)


def test_trainer_trains_on_images(backend):
    rng = np.random.default_rng(5)
    t = rng.integers(0, 2, 200)
    x = rng.random((200, 1, 10, 10)).astype(np.float32) * 0.3
    x[t == 1, :, 2:5, 2:5] += 0.7  # a bright square marks class 1
    net = SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 4, "filter_size": 3,
                                                           "pad": 0, "stride": 1},
                        hidden_size=10, output_size=2, weight_init_std="he", seed=0)
    trainer = Trainer(net, x, t, x[:50], t[:50], epochs=5, mini_batch_size=20,
                      optimizer="Adam", optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    trainer.train()
    assert trainer.test_acc_list[-1] > 0.9
    assert trainer.batches.x.shape == (200, 1, 10, 10)


def short_run(x, t):
    net = SimpleConvNet(input_dim=(1, 12, 12), conv_param={"filter_num": 4, "filter_size": 3,
                                                           "pad": 1, "stride": 1},
                        hidden_size=8, output_size=3, weight_init_std="he", seed=0)
    trainer = Trainer(net, x, t, x[:20], t[:20], iters=12, mini_batch_size=10,
                      optimizer="Momentum", optimizer_param={"lr": 0.05}, verbose=False,
                      seed=0, graph=False)
    trainer.train()
    return np.array(trainer.train_loss_list), {k: backends.to_numpy(v)
                                               for k, v in net.params.items()}


def test_cpu_gpu_parity_of_a_short_run():
    x = RNG.random((60, 1, 12, 12)).astype(np.float32)
    t = RNG.integers(0, 3, 60)
    check_parity(short_run, x, t, rtol=2e-4, atol=1e-5)


def test_checkpoint_round_trip(backend, tmp_path):
    net = DeepConvNet(input_dim=(1, 8, 8), **{f"conv_param_{i}": small(i) for i in range(1, 7)},
                      hidden_size=6, output_size=3, seed=0)
    x, t = images(backend.xp, 4, (1, 8, 8), classes=3)
    net.gradient(backend.xp.astype(x, net.dtype), t)  # moves the dropout generators
    net.save_params(tmp_path / "deep.npz")
    other = DeepConvNet(input_dim=(1, 8, 8), **{f"conv_param_{i}": small(i) for i in range(1, 7)},
                        hidden_size=6, output_size=3, seed=7)
    other.load_params(tmp_path / "deep.npz")
    np.testing.assert_array_equal(to_host(other.predict(x)), to_host(net.predict(x)))
    from framework.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="checkpoint is DeepConvNet"):
        DeepConvNet(input_dim=(1, 8, 8)).load_params(tmp_path / "deep.npz")


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_dim=(1, 28)), r"input_dim must be \(channels, height, width\)"),
    (dict(input_dim=(1, 28, 28, 1)), r"input_dim must be \(channels, height, width\), got "
                                     r"\(1, 28, 28, 1\)"),
    (dict(conv_param={"filter_num": 30, "filter_size": 5, "pad": -1, "stride": 1}),
     r"conv_param\['pad'\] must be an integer of at least 0, got -1"),
    (dict(conv_param={"filter_num": 30, "filter_size": 5, "pad": True, "stride": 1}),
     r"conv_param\['pad'\] must be an integer of at least 0, got True"),  # not a pad of 1
    (dict(input_dim=(0, 28, 28)), r"input_dim\[0\] must be at least 1"),
    (dict(conv_param={"filter_num": 30}), "conv_param must be a dict with the keys"),
    (dict(conv_param={"filter_num": 30, "filter_size": 0, "pad": 0, "stride": 1}),
     r"conv_param\['filter_size'\] must be at least 1"),
    (dict(conv_param={"filter_num": 30, "filter_size": 40, "pad": 0, "stride": 1}),
     "Conv1: a 40x40 filter does not fit the padded 28x28 input"),
    (dict(hidden_size=0), "hidden_size must be at least 1"),
])
def test_nonsense_is_refused(backend, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimpleConvNet(**kwargs)


@pytest.mark.parametrize("make", [lambda: SimpleConvNet(input_dim=(1, 12, 12), conv_param={
    "filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}, hidden_size=5),
    lambda: DeepConvNet(input_dim=(1, 8, 8))], ids=["simple", "deep"])
@pytest.mark.parametrize("shape, hint", [
    ((144,), "; these are flattened images: reshape x to (N, 1, 12, 12), or load them with "
             "flatten=False"),
    ((1, 10, 10), ""),   # the layer that noticed was an Affine, far from the cause
    ((3, 12, 12), "")])
@pytest.mark.parametrize("method", ["predict", "loss", "gradient", "accuracy",
                                    "numerical_gradient"])
def test_images_of_another_shape_are_named_as_the_networks_input(backend, make, shape, hint,
                                                                 method):
    """A flattened MNIST batch (load_mnist's default) met 'Conv1: expected images of shape
    (N, C, H, W)', and images of another size 'Affine1: input has 576 features, W expects
    484': the network now says which input it was built for, the layer's words kept as the
    cause (numerical_gradient's too, which gave the layer's words alone)."""
    net = make()
    if isinstance(net, DeepConvNet):
        # (1, 6, 6) would give it the same 64 features as (1, 8, 8): no error, as in PyTorch
        shape = {(144,): (64,), (1, 10, 10): (1, 20, 20), (3, 12, 12): (3, 8, 8)}[shape]
        hint = hint.replace("12, 12", "8, 8")
    x = backends.to_device(np.zeros((2, *shape), dtype=np.float32))
    t = backends.to_device(np.array([1, 2]))
    call = {"predict": lambda: net.predict(x), "loss": lambda: net.loss(x, t),
            "gradient": lambda: net.gradient(x, t), "accuracy": lambda: net.accuracy(x, t),
            "numerical_gradient": lambda: net.numerical_gradient(x, t)}
    with pytest.raises(ValueError) as info:
        call[method]()
    dims = "(1, 12, 12)" if isinstance(net, SimpleConvNet) else "(1, 8, 8)"
    assert str(info.value) == (f"{type(net).__name__}.{method}: x holds samples of shape "
                               f"{shape}, but this network was built for input_dim={dims}{hint}")
    assert isinstance(info.value.__cause__, ValueError)  # the layer's, kept


@pytest.mark.parametrize("method", ["predict", "loss", "gradient", "numerical_gradient"])
def test_one_image_without_its_batch_axis_is_told_how_to_make_a_batch_of_one(backend, method):
    """An image of the network's very input_dim, passed alone, was 'samples of shape
    (12, 12)' with no word on what to do."""
    net = SimpleConvNet(input_dim=(1, 12, 12), conv_param={
        "filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}, hidden_size=5)
    x = backends.to_device(np.zeros((1, 12, 12), dtype=np.float32))
    t = backends.to_device(np.array([1]))
    call = {"predict": lambda: net.predict(x), "loss": lambda: net.loss(x, t),
            "gradient": lambda: net.gradient(x, t),
            "numerical_gradient": lambda: net.numerical_gradient(x, t)}
    with pytest.raises(ValueError, match=rf"^SimpleConvNet\.{method}: x holds samples of shape "
                                         rf"\(12, 12\), but this network was built for "
                                         rf"input_dim=\(1, 12, 12\); x is one sample: use "
                                         rf"x\[None\] for a batch of one$"):
        call[method]()
    assert net.predict(x[None, ...]).shape == (1, 10)
