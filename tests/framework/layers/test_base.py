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
    # a weight of two axes: flat element 5 of a (2, 3) is [1, 2], element 1 is [0, 1]
    w = np.arange(1.0, 7.0).reshape(2, 3)
    layer = Scale(backends.to_device(w))
    x = backends.to_device(np.ones((4, 2, 3)))
    out = layer.perturbed_outputs(x, "w", backends.to_device([5, 1]), 0.5)
    moved = [w + 0.5 * np.eye(6)[i].reshape(2, 3) for i in (5, 1)]
    np.testing.assert_array_equal(to_host(out), np.stack([np.ones((4, 2, 3)) * m
                                                          for m in moved]))


def layers_of_the_book(xp):
    """Each layer that keeps something for backward, made ready for a forward pass, with
    a ``dout`` for it."""
    from framework.layers import (Affine, BatchNormalization, Dropout, MulLayer, Pooling, Relu,
                                  Sigmoid, SoftmaxWithLoss)
    d = lambda *shape: backends.to_device(np.ones(shape))  # noqa: E731
    return [(Affine(d(4, 3), d(3)), d(2, 3)), (Relu(), d(2, 3)), (Sigmoid(), d(2, 3)),
            (SoftmaxWithLoss(), 1), (Dropout(0.5), d(2, 3)),
            (BatchNormalization(d(3), d(3)), d(2, 3)), (Pooling(2, 2, 2), d(1, 1, 2, 2)),
            (MulLayer(), 1.0)]


def test_backward_before_any_forward_says_so(xp):
    """The book's layers fail there with Python's words about None (``'NoneType' object
    has no attribute 'T'``); ours name the layer and what is missing. Checked only once a
    backward has failed: nothing is looked at on a training step."""
    import pytest
    for layer, dout in layers_of_the_book(xp):
        with pytest.raises(ValueError, match=rf"{type(layer).__name__}: backward needs a "
                                             rf"forward pass \(in training mode\) first: none "
                                             rf"has kept what backward reads \({layer.saved[0]} "
                                             rf"is None\)"):
            layer.backward(dout)


def layers_with_inputs(xp):
    """Each layer that computes on arrays, with an input for its forward pass (and labels
    for the loss's)."""
    from framework.layers import (Affine, BatchNormalization, Convolution, Dropout, Pooling,
                                  Relu, Sigmoid, SoftmaxWithLoss)
    d = lambda *shape: backends.to_device(np.ones(shape))  # noqa: E731
    labels = backends.to_device(np.array([0, 2]))
    return [(Affine(d(4, 3), d(3)), d(2, 4), ()), (Relu(), d(2, 3), ()),
            (Sigmoid(), d(2, 3), ()), (SoftmaxWithLoss(), d(2, 3), (labels,)),
            (Dropout(0.5), d(2, 3), ()), (BatchNormalization(d(3), d(3)), d(2, 3), ()),
            (Pooling(2, 2, 2), d(1, 1, 2, 2), ()),
            (Convolution(d(2, 1, 2, 2), d(2)), d(1, 1, 3, 3), ())]


def test_a_layer_given_what_is_not_an_array_says_so(xp):
    """A list (or a number, or None) passed to a layer on its own fails naming the layer,
    the argument and what to do, where it failed in Python's words about a list's missing
    ``shape`` or ``nbytes``. Looked at only once a pass failed (or for a new kind of input):
    nothing on a training step."""
    import pytest
    for layer, x, labels in layers_with_inputs(xp):
        where = f"{type(layer).__name__}.forward"
        for bad in ([[1.0, 2.0, 3.0]], None):
            with pytest.raises(TypeError, match=rf"^{where}: x must be an array, got "
                                                rf"{type(bad).__name__}; convert it first"):
                layer.forward(bad, *labels)
        if labels:  # the loss's labels too
            with pytest.raises(TypeError, match=rf"^{where}: t must be an array, got list"):
                layer.forward(x, [0, 2])
        out = layer.forward(x, *labels)  # the layer works after all that
        if labels:
            continue  # the loss's dout is a number
        # on every backend, where NumPy's own functions took the list for Sigmoid and Affine
        with pytest.raises(TypeError, match=rf"^{type(layer).__name__}\.backward: dout must be "
                                            rf"an array, got list; convert it first"):
            layer.backward(to_host(out).tolist())
        assert type(layer.backward(out)) is type(x)  # and works after it
