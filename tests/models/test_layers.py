"""models/layers.py and framework/layers/adopted.py: a layer of the reader's own, written as
the book writes one, put in a network's ``layers``."""

import copy
import pickle

import numpy as np
import pytest

import backends
from backends import get_array_module
from backends.arrays import on_device_of
from framework.layers import Affine, Layer
from framework.testing import check_model
from framework.trainer import Trainer
from models import TwoLayerNet
from tests.conftest import to_host


class LeakyRelu:
    """The README's own layer: out = x where x > 0, else slope * x."""

    def __init__(self, slope=0.01):
        self.slope = slope
        self.scale = None

    def forward(self, x):
        xp = get_array_module(x)
        self.scale = xp.where(x > 0, xp.ones_like(x), xp.full_like(x, self.slope))
        return x * self.scale

    def backward(self, dout):
        return dout * self.scale


class Halve:
    """A layer that differs in training, as the book's Dropout: it takes ``train_flg``."""

    def __init__(self):
        self.flags = []

    def forward(self, x, train_flg=True):
        self.flags.append(train_flg)
        return x * 0.5 if train_flg else x

    def backward(self, dout):
        return dout * 0.5


class MeanSquaredLoss:
    """A loss of the reader's own, as the book writes SoftmaxWithLoss: 0.5 * sum((x - onehot)^2)
    / N, its gradient (x - onehot) / N."""

    def __init__(self):
        self.loss = self.diff = None

    def forward(self, x, t):
        xp = get_array_module(x)
        classes = xp.arange(x.shape[1], **on_device_of(xp, x))  # (device=x.device)
        onehot = xp.astype(classes[None, :] == t[:, None], x.dtype) if t.ndim == 1 else t
        self.diff = x - onehot
        self.loss = 0.5 * xp.sum(self.diff * self.diff) / x.shape[0]
        return self.loss

    def backward(self, dout=1):
        return dout * self.diff / self.diff.shape[0]


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 4)) - 0.5, rng.integers(0, 3, n)


def test_the_readers_own_layer_trains_in_a_network_as_any_other(backend):
    """The README's LeakyRelu in place of TwoLayerNet's Relu (the book's way to try another
    activation): every call failed with "'LeakyRelu' object has no attribute
    'takes_train_flg'" (``state``: 'buffers', the numerical gradient: 'forward_stack')."""
    x, t = data()
    net = TwoLayerNet(4, 5, 3, weight_init_std=1.0, seed=1, dtype="float64")
    hidden = x @ to_host(net.params["W1"]) + to_host(net.params["b1"])
    assert np.abs(hidden).min() > 1e-3  # no input within the differences' h of the kink
    leaky = net.layers["Relu1"] = LeakyRelu(0.1)
    assert net.layers["Relu1"] is leaky and isinstance(leaky, LeakyRelu) and leaky.slope == 0.1
    assert isinstance(leaky, Layer) and leaky.name == "Relu1" and net.state() == {}
    xd, td = backends.to_device(x), backends.to_device(t)
    check_model(net, xd, td)  # its gradient is the one central differences give
    scores = to_host(net.predict(xd))
    np.testing.assert_allclose(scores, np.where(hidden > 0, hidden, 0.1 * hidden)
                               @ to_host(net.params["W2"]) + to_host(net.params["b2"]),
                               rtol=1e-12)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        kept = clone.layers["Relu1"]
        assert type(kept) is type(leaky) and kept.slope == 0.1 and kept is not leaky
        np.testing.assert_array_equal(to_host(clone.predict(xd)), scores)
    trainer = Trainer(net, x, t, x, t, epochs=2, mini_batch_size=4, verbose=False, seed=0)
    trainer.train()
    assert len(trainer.train_loss_list) == 6 and trainer.step_mode is not None
    trained = pickle.loads(pickle.dumps(net))  # (JAX's compiled step left no tracer in it)
    np.testing.assert_array_equal(to_host(trained.predict(xd)), to_host(net.predict(xd)))


@pytest.mark.parametrize("name", ["lastLayer", "last_layer"])
def test_the_readers_own_loss_layer_trains_and_is_checked(backend, name):
    """A loss layer of the reader's own, set by the book's name or ours: ``loss`` and
    ``gradient`` ran, but the numerical gradient failed on 'forward_stack', the Trainer
    (after its first epoch's evaluation) on 'free_saved', and ``net.lastLayer = ...``
    on "property 'lastLayer' of 'TwoLayerNet' object has no setter"."""
    x, t = data()
    net = TwoLayerNet(4, 5, 3, weight_init_std=1.0, seed=1, dtype="float64")
    loss = MeanSquaredLoss()
    setattr(net, name, loss)
    assert net.lastLayer is loss and net.last_layer is loss
    xd, td = backends.to_device(x), backends.to_device(t)
    scores = to_host(net.predict(xd))
    expected = 0.5 * np.sum((scores - np.eye(3)[t]) ** 2) / 12
    assert float(net.loss(xd, td)) == pytest.approx(expected, rel=1e-12)
    check_model(net, xd, td)
    trainer = Trainer(net, x, t, x, t, epochs=2, mini_batch_size=4, verbose=False, seed=0)
    trainer.train()
    assert isinstance(net.last_layer, MeanSquaredLoss) and len(trainer.train_loss_list) == 6
    clone = pickle.loads(pickle.dumps(net))
    assert type(clone.last_layer) is type(net.last_layer)


def test_a_layer_that_takes_train_flg_gets_it(backend):
    x, t = data()
    net = TwoLayerNet(4, 5, 3, seed=0)
    halve = net.layers["Relu1"] = Halve()
    xd, td = backends.to_device(x), backends.to_device(t)
    net.predict(xd)
    net.gradient(xd, td)
    assert halve.takes_train_flg and halve.flags == [False, True]


def test_a_layer_swapped_in_is_the_one_whose_gradients_are_read(backend):
    """``gradient`` kept the layer objects it first read the gradients from: an Affine put
    in Affine1's place (its parameters are the network's, by name) had its dW ignored, and
    the one it replaced gave its last gradient again."""
    import copy
    import pickle
    x, t = data()
    original = TwoLayerNet(4, 5, 3, seed=0)
    xd, td = backends.to_device(x), backends.to_device(t)
    original.gradient(xd, td)  # where it reads its gradients, worked out and kept
    # a copy or a pickle of a network in use too: its layers tell the copy, not no one
    for net in (original, copy.deepcopy(original), pickle.loads(pickle.dumps(original))):
        before = net.gradient(xd, td)["W1"]
        fresh = net.layers["Affine1"] = Affine(net.params["W1"], net.params["b1"])
        grads = net.gradient(backends.to_device(x[::-1] * 2), td)
        assert grads["W1"] is fresh.dW and not np.allclose(to_host(grads["W1"]),
                                                           to_host(before))


def test_what_is_no_layer_is_refused_by_name():
    net = TwoLayerNet(4, 5, 3, seed=0)

    class Half:
        def forward(self, x):
            return x * 0.5

    class Slotted:
        __slots__ = ("scale",)

        def forward(self, x):
            return x

        def backward(self, dout):
            return dout

    with pytest.raises(TypeError, match=r"^TwoLayerNet.layers\['Relu1'\]: Half has no "
                                        r"backward; a layer has forward\(x\) and "
                                        r"backward\(dout\)"):
        net.layers["Relu1"] = Half()
    with pytest.raises(TypeError, match=r"^TwoLayerNet.layers\['Relu2'\]: Slotted cannot be "
                                        r"taken into a network as it is .*; subclass "
                                        r"framework.layers.Layer \(class Slotted\(Layer\)\)"):
        net.layers.update(Relu2=Slotted())
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]  # nothing half-done

    class Keeper(LeakyRelu):  # its own "saved": a list of what it keeps
        def __init__(self):
            super().__init__()
            self.saved = []

    with pytest.raises(TypeError, match=r"^TwoLayerNet.layers\['Relu1'\]: Keeper.saved is "
                                        r"list, but a network reads a layer's saved as the "
                                        r"names of what its forward keeps .*; rename"):
        net.layers["Relu1"] = Keeper()  # (free_saved would have set attributes named by arrays)


def test_a_layer_that_pickles_its_own_way_is_copied_its_own_way():
    """A copy of an adopted layer goes through its class's ``__getstate__`` and
    ``__setstate__`` where it has them (here: leaving its cache out)."""

    class Cached(LeakyRelu):
        def __getstate__(self):
            return {"slope": self.slope}

        def __setstate__(self, state):
            self.slope, self.scale = state["slope"], None

    net = TwoLayerNet(4, 5, 3, seed=0)
    net.layers["Relu1"] = Cached(0.2)
    net.predict(backends.to_device(np.ones((2, 4), np.float32)))
    clone = copy.deepcopy(net).layers["Relu1"]
    assert isinstance(clone, Cached) and isinstance(clone, Layer)
    assert clone.slope == 0.2 and clone.scale is None
