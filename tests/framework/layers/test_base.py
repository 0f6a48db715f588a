"""framework/layers/base.py: the defaults every layer gets, for a layer that writes none."""

import numpy as np

import backends
from framework.layers import Layer
from tests.conftest import to_host


class Scale(Layer):
    """out = x * w (one weight per feature), written with forward and backward only."""

    def __init__(self, w):
        super().__init__()
        self.w = w
        self.x = None

    def forward(self, x):
        self.x = x
        return x * self.w

    def backward(self, dout):
        self.dw = (dout * self.x).sum(axis=0)
        return dout * self.w


def test_defaults(xp):
    layer = Scale(backends.to_device(np.ones(3)))
    assert layer.name == "Scale" and layer.takes_train_flg is False and layer.buffers == ()


def test_the_stacked_forward_folds_the_stack_and_leaves_the_layer_as_it_was(xp):
    layer = Scale(backends.to_device([1.0, 2.0, 3.0]))
    x = backends.to_device(np.arange(24.0).reshape(2, 4, 3))
    seen = layer.forward(x[0, ...])
    out = layer.forward_stack(x)
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(to_host(out), to_host(x) * [1.0, 2.0, 3.0])
    assert layer.x is not None and to_host(layer.x).tolist() == to_host(x[0, ...]).tolist()
    assert seen is not None


def test_perturbed_outputs_move_one_element_each(xp):
    layer = Scale(backends.to_device([1.0, 2.0, 3.0]))
    x = backends.to_device(np.arange(12.0).reshape(4, 3))
    out = layer.perturbed_outputs(x, "w", backends.to_device([0, 2]), 0.5)
    want = np.stack([to_host(x) * [1.5, 2.0, 3.0], to_host(x) * [1.0, 2.0, 3.5]])
    np.testing.assert_array_equal(to_host(out), want)
    np.testing.assert_array_equal(to_host(layer.w), [1.0, 2.0, 3.0])  # put back
