"""framework/layers/ (activations, affine, arithmetic, softmax_loss): forward against hand-computed numbers, backward against
central differences in float64, on every available backend."""

import re

import numpy as np

import backends
import pytest

from framework.layers import (AddLayer, Affine, BatchNormalization, Convolution, Dropout,
                              MulLayer, Relu, Sigmoid, SoftmaxWithLoss)
from framework.testing import check_backward
from tests.conftest import to_host

RNG = np.random.default_rng(20261126)


def away_from_kink(shape):
    """Values in ±[0.1, 1.1): a central difference of h=1e-4 never crosses ReLU's kink."""
    return RNG.choice([-1.0, 1.0], size=shape) * (0.1 + RNG.random(shape))


# --- the computational-graph layers on Python numbers -----------------------

def test_mul_layer_apple_example():
    apple, tax = MulLayer(), MulLayer()
    price = tax.forward(apple.forward(100, 2), 1.1)
    assert price == pytest.approx(220)
    dapple_price, dtax = tax.backward(1)
    dapple, dapple_num = apple.backward(dapple_price)
    assert (dapple, dapple_num, dtax) == pytest.approx((2.2, 110, 200))


def test_add_layer_passes_gradient_through():
    add = AddLayer()
    assert add.forward(200, 450) == 650
    assert add.backward(1.1) == (1.1, 1.1)


@pytest.mark.parametrize("x, y, said", [
    ("100", 2, r"MulLayer.forward: x is str '100'; expected a number or an array: "
               r"float\('100'\) for a number read as text"),
    (100, [2], r"AddLayer.forward: y is list \[2\]; expected a number or an array: "
               r"numpy.asarray\(...\) for a list"),
])
def test_the_shop_refuses_what_is_no_number(x, y, said):
    """A price read with ``input()`` is text: ``'100' * 2`` was ``'100100'``, ``100 + [2]``
    Python's own words, as the book's nodes compute whatever ``*`` and ``+`` take."""
    layer = MulLayer() if isinstance(x, str) else AddLayer()
    with pytest.raises(TypeError, match="^" + said):
        layer.forward(x, y)


def test_mul_and_add_on_arrays(xp):
    mul = MulLayer()
    out = mul.forward(backends.to_device([1.0, 2.0]), backends.to_device([3.0, 4.0]))
    np.testing.assert_array_equal(to_host(out), [3.0, 8.0])
    dx, dy = mul.backward(backends.to_device([1.0, 10.0]))
    np.testing.assert_array_equal(to_host(dx), [3.0, 40.0])
    np.testing.assert_array_equal(to_host(dy), [1.0, 20.0])
    # AddLayer hands back two new arrays (the book's dout * 1): a caller's in-place change
    # of one gradient reaches neither the other nor dout
    dout = backends.to_device([1.0, 10.0])
    dx, dy = AddLayer().backward(dout)
    assert dx is not dy and dx is not dout and dy is not dout
    np.testing.assert_array_equal(to_host(dx), [1.0, 10.0])


@pytest.mark.parametrize("layer_class", [MulLayer, AddLayer])
def test_mul_and_add_backward_match_numerical(xp, layer_class):
    x = backends.to_device(RNG.standard_normal((3, 4)))
    y = backends.to_device(RNG.standard_normal((3, 4)))
    report = check_backward(layer_class(), (x, y))
    assert set(report) == {"input 0", "input 1"}


# --- Relu -------------------------------------------------------------------

def test_relu_forward_backward_numbers(xp):
    layer = Relu()
    x = backends.to_device([[1.0, -0.5], [-2.0, 3.0]])
    np.testing.assert_array_equal(to_host(layer.forward(x)), [[1.0, 0.0], [0.0, 3.0]])
    np.testing.assert_array_equal(to_host(layer.mask), [[False, True], [True, False]])
    dout = backends.to_device([[5.0, 6.0], [7.0, 8.0]])
    dx = layer.backward(dout)
    np.testing.assert_array_equal(to_host(dx), [[5.0, 0.0], [0.0, 8.0]])
    # unlike the book, the caller's dout is left as it was
    np.testing.assert_array_equal(to_host(dout), [[5.0, 6.0], [7.0, 8.0]])


def test_relu_gives_the_books_zero_for_minus_infinity_and_passes_nan_on(xp):
    x = backends.to_device([[-np.inf, np.inf, np.nan, -1.0, 0.0]])
    want = [[0.0, np.inf, np.nan, 0.0, 0.0]]
    np.testing.assert_array_equal(to_host(Relu().forward(x)), want)
    np.testing.assert_array_equal(to_host(Relu().forward_stack(x[None, ...]))[0], want)


def test_relu_backward_matches_numerical(xp):
    check_backward(Relu(), backends.to_device(away_from_kink((4, 5))))


# --- Sigmoid ----------------------------------------------------------------

def test_sigmoid_forward_backward_numbers(xp):
    layer = Sigmoid()
    y = layer.forward(backends.to_device([0.0, 2.0]))
    np.testing.assert_allclose(to_host(y), [0.5, 0.8807970779778823], rtol=1e-12)
    # dy/dx = y(1 - y): 0.25 and 0.104993585...
    dx = layer.backward(backends.to_device([1.0, 2.0]))
    np.testing.assert_allclose(to_host(dx), [0.25, 2 * 0.10499358540350652], rtol=1e-12)


def test_sigmoid_backward_matches_numerical(xp):
    check_backward(Sigmoid(), backends.to_device(RNG.standard_normal((3, 4)) * 3))


# --- Affine -----------------------------------------------------------------

def test_affine_forward_backward_numbers(xp):
    W = backends.to_device([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    b = backends.to_device([0.5, -0.5, 1.0])
    layer = Affine(W, b)
    x = backends.to_device([[1.0, 1.0], [2.0, -1.0]])
    np.testing.assert_array_equal(to_host(layer.forward(x)), [[5.5, 6.5, 10.0], [-1.5, -1.5, 1.0]])
    dout = backends.to_device([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    dx = layer.backward(dout)
    np.testing.assert_array_equal(to_host(dx), [[14.0, 32.0], [32.0, 77.0]])
    np.testing.assert_array_equal(to_host(layer.dW), [[9.0, 12.0, 15.0], [-3.0, -3.0, -3.0]])
    np.testing.assert_array_equal(to_host(layer.db), [5.0, 7.0, 9.0])  # the book's dB example


def test_affine_keeps_parameter_references(backend):
    if not backend.mutable:
        pytest.skip("JAX's arrays are immutable: a layer given W sees no later change to it "
                    "(a network's params pass each new array on: tests/models/test_base.py)")
    W, b = backends.to_device(np.zeros((2, 2))), backends.to_device(np.zeros(2))
    layer = Affine(W, b)
    W += 1.0  # the in-place update of the book's training loop
    b -= 1.0
    np.testing.assert_array_equal(to_host(layer.forward(backends.to_device(np.ones((1, 2))))), [[1.0, 1.0]])


def test_affine_backward_matches_numerical_for_nd_input(xp):
    x = backends.to_device(RNG.standard_normal((2, 3, 2, 2)))  # (N, C, H, W) flattens to (N, 12)
    W = backends.to_device(RNG.standard_normal((12, 5)))
    b = backends.to_device(RNG.standard_normal(5))
    layer = Affine(W, b)
    assert layer.forward(x).shape == (2, 5)
    assert layer.backward(backends.to_device(np.ones((2, 5)))).shape == x.shape  # the input's shape is restored
    report = check_backward(layer, x, params=("W", "b"))
    assert set(report) == {"input 0", "W", "b"}


def test_affine_without_input_grad_skips_dx(xp):
    layer = Affine(backends.to_device(np.ones((3, 2))), backends.to_device(np.zeros(2)))
    layer.input_grad = False
    layer.forward(backends.to_device(np.ones((4, 3))))
    assert layer.backward(backends.to_device(np.ones((4, 2)))) is None
    np.testing.assert_array_equal(to_host(layer.dW), np.full((3, 2), 4.0))


def test_affine_shape_errors_name_the_layer(xp):
    layer = Affine(backends.to_device(np.zeros((784, 50))), backends.to_device(np.zeros(50)), name="Affine1")
    with pytest.raises(ValueError, match="Affine1: input has 780 features, W expects 784"):
        layer.forward(backends.to_device(np.zeros((2, 780))))
    with pytest.raises(ValueError, match=r"Affine1: expected a batch of shape \(N, ...\)"):
        layer.forward(backends.to_device(np.zeros(784)))
    with pytest.raises(ValueError, match=r"b of shape \(out,\)"):
        Affine(backends.to_device(np.zeros((3, 2))), backends.to_device(np.zeros(3)))


def test_affine_checks_again_when_its_weights_move_to_another_library():
    """The check of a kind of input covers the weights' library too: W replaced by another
    library's array (the network's parameters put on another backend) is named at the next
    forward pass, not left to the libraries' mixed matrix product."""
    strict = pytest.importorskip("array_api_strict")
    layer = Affine(np.ones((3, 2)), np.zeros(2), name="Affine1")
    x = np.ones((4, 3))
    layer.forward(x)
    layer.W, layer.b = strict.ones((3, 2)), strict.zeros(2)
    with pytest.raises(TypeError, match=r"^Affine1: arrays from different backends \(x is numpy, "
                                        r"W is array_api_strict on "):
        layer.forward(x)


# --- SoftmaxWithLoss ----------------------------------------------------------

def test_softmax_with_loss_numbers(xp):
    layer = SoftmaxWithLoss()
    x = backends.to_device([[0.3, 2.9, 4.0], [0.0, 0.0, 0.0]])
    t = backends.to_device([2, 0])
    loss = layer.forward(x, t)
    # -log(0.73659691) and -log(1/3), averaged
    assert float(loss) == pytest.approx((0.30571447 + 1.09861229) / 2, rel=1e-7)
    dx = to_host(layer.backward())
    expected = np.array([[0.01821127, 0.24519181, 0.73659691 - 1], [1 / 3 - 1, 1 / 3, 1 / 3]]) / 2
    np.testing.assert_allclose(dx, expected, rtol=1e-6)
    # dout scales the gradient (the book ignores it)
    np.testing.assert_allclose(to_host(layer.backward(3.0)), 3 * expected, rtol=1e-6)


def test_softmax_with_loss_one_hot_equals_labels(xp):
    x = backends.to_device(RNG.standard_normal((5, 4)))
    labels = backends.to_device([0, 3, 1, 1, 2])
    one_hot = backends.to_device(np.eye(4)[[0, 3, 1, 1, 2]])
    a, b = SoftmaxWithLoss(), SoftmaxWithLoss()
    assert float(a.forward(x, labels)) == pytest.approx(float(b.forward(x, one_hot)), rel=1e-14)
    np.testing.assert_allclose(to_host(a.backward()), to_host(b.backward()), rtol=1e-14)


@pytest.mark.parametrize("one_hot_dtype", ["float64", "int64", "float32"])
def test_one_hot_labels_of_another_dtype_are_taken_in_the_scores_dtype(backend, one_hot_dtype):
    """np.eye(10)[t] is float64: on a float32 network NumPy promoted the loss and the
    whole backward to float64, PyTorch refused ("expected m1 and m2 to have the same
    dtype") and array-api-strict too ("Cannot perform __isub__ with dtypes float32 and
    float64"). The rows are now taken in the scores' dtype: the labels' results, in it."""
    rows = [0, 3, 1, 1, 2]
    x = backend.asarray(RNG.standard_normal((5, 4)), "float32")
    one_hot = backend.asarray(np.eye(4, dtype=one_hot_dtype)[rows])
    a, b = SoftmaxWithLoss(), SoftmaxWithLoss()
    loss, want = b.forward(x, one_hot), a.forward(x, backend.asarray(np.array(rows)))
    assert backends.dtype_name(loss.dtype) == "float32"
    assert float(loss) == pytest.approx(float(want), rel=1e-6)
    dx = b.backward()
    assert backends.dtype_name(dx.dtype) == "float32"
    np.testing.assert_allclose(to_host(dx), to_host(a.backward()), rtol=1e-6, atol=1e-7)
    assert b.t is one_hot  # the labels as given are what the layer keeps
    stacked = b.forward_stack(x[None, ...], one_hot)
    assert backends.dtype_name(stacked.dtype) == "float32"
    assert float(stacked[0]) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("labels", ["int", "one_hot"])
def test_softmax_with_loss_backward_matches_numerical(xp, labels):
    x = backends.to_device(RNG.standard_normal((4, 3)) * 2)
    t = backends.to_device([2, 0, 1, 2])
    if labels == "one_hot":
        t = backends.to_device(np.eye(3)[[2, 0, 1, 2]])
    report = check_backward(SoftmaxWithLoss(), (x, t), dout=1.0)
    assert set(report) == {"input 0"}  # the labels are data, not differentiated


def test_softmax_with_loss_survives_huge_scores(xp):
    layer = SoftmaxWithLoss()
    loss = layer.forward(backends.to_device([[1000.0, 0.0], [0.0, 1000.0]]), backends.to_device([1, 1]))
    assert float(loss) == pytest.approx(500.0)  # the book's log(y + 1e-7) would say 8.06


def test_softmax_with_loss_checks_again_when_either_shape_changes(xp):
    """The checks run once per kind of input: a kind that left out x's or t's shape took
    a batch of other sizes for one already checked, and the gather's words came out
    instead ("a label outside 0..9", of labels that all lie inside)."""
    layer = SoftmaxWithLoss()
    x3, t3 = backends.to_device(np.zeros((3, 10))), backends.to_device([1, 2, 3])
    layer.forward(x3, t3)
    with pytest.raises(ValueError, match="x has 2 samples but t has 3 labels"):
        layer.forward(x3[:2, ...], t3)
    layer.forward(x3, t3)
    with pytest.raises(ValueError, match="x has 3 samples but t has 2 labels"):
        layer.forward(x3, t3[:2])
    assert float(layer.forward(x3[:2, ...], t3[:2])) == pytest.approx(np.log(10))


def test_softmax_with_loss_label_errors(xp):
    layer = SoftmaxWithLoss()
    x = backends.to_device(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="x has 3 samples but t has 2 labels"):
        layer.forward(x, backends.to_device([1, 2]))
    with pytest.raises(ValueError, match=r"t has shape \(3, 9\); expected one-hot \(3, 10\)"):
        layer.forward(x, backends.to_device(np.zeros((3, 9))))
    with pytest.raises(ValueError, match="must be integer class indices"):
        layer.forward(x, backends.to_device([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"SoftmaxWithLoss: expected scores of shape \(N, classes\)"):
        layer.forward(backends.to_device(np.zeros(10)), backends.to_device([1]))


@pytest.mark.parametrize("labels, seen", [([0, 10], "0..10"), ([-1, 3], "-1..3")])
def test_softmax_with_loss_labels_out_of_range(xp, labels, seen):
    """A label outside the classes is an error naming their range wherever the labels are
    host memory, whatever the library's gather does with it (NumPy's and the standard's
    take wrap a negative index without a word, so the layer looks at the labels where the
    operations do not say); on a device, where reading them would stall every step, the
    loss is NaN (the Trainer checks its data once, where it is sent)."""
    layer = SoftmaxWithLoss()
    x, t = backends.to_device(np.zeros((2, 10))), backends.to_device(labels)
    if backends.is_device_array(t):
        assert np.isnan(float(layer.forward(x, t)))
        return
    with pytest.raises(ValueError, match=rf"labels must lie in 0..9 for 10 classes, got values "
                                         rf"{re.escape(seen)}$"):
        layer.forward(x, t)


# --- the stack forms used by the vectorised numerical gradient ----------------

def test_affine_perturbed_outputs_equal_perturbed_forward_passes(xp):
    W = backends.to_device(RNG.standard_normal((6, 4)))
    b = backends.to_device(RNG.standard_normal(4))
    x = backends.to_device(RNG.standard_normal((3, 6)))
    layer = Affine(W, b)
    for param, index in (("W", [0, 5, 23, 11]), ("b", [3, 0])):
        index = backends.to_device(index)
        got = layer.perturbed_outputs(x, param, index, 0.25)
        assert got.shape == (index.shape[0], 3, 4)
        for k, flat in enumerate(to_host(index).tolist()):
            W2, b2 = to_host(W).copy(), to_host(b).copy()
            target = W2 if param == "W" else b2
            target.reshape(-1)[flat] += 0.25
            moved = Affine(backends.to_device(W2), backends.to_device(b2))
            np.testing.assert_allclose(to_host(got[k, ...]), to_host(moved.forward(x)),
                                       rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="no parameter 'V'"):
        layer.perturbed_outputs(x, "V", backends.to_device([0]), 0.1)


def test_forward_stack_matches_forward_per_slice(xp):
    s = backends.to_device(RNG.standard_normal((4, 3, 6)))
    t = backends.to_device([1, 0, 5])
    affine = Affine(backends.to_device(RNG.standard_normal((6, 5))), backends.to_device(RNG.standard_normal(5)))
    for k in range(4):
        np.testing.assert_allclose(to_host(affine.forward_stack(s)[k, ...]),
                                   to_host(affine.forward(s[k, ...])), rtol=1e-13)
        np.testing.assert_array_equal(to_host(Relu().forward_stack(s)[k, ...]),
                                      to_host(Relu().forward(s[k, ...])))
        np.testing.assert_allclose(to_host(Sigmoid().forward_stack(s)[k, ...]),
                                   to_host(Sigmoid().forward(s[k, ...])), rtol=1e-15)
        loss = SoftmaxWithLoss()
        stacked = to_host(loss.forward_stack(s, t))
        assert stacked[k] == pytest.approx(float(loss.forward(s[k, ...], t)), rel=1e-13)
        onehot = to_host(loss.forward_stack(s, backends.to_device(np.eye(6)[[1, 0, 5]])))
        assert onehot[k] == pytest.approx(stacked[k], rel=1e-13)


def test_forward_stack_in_inference_is_forward_in_inference_per_slice(xp):
    """The layers that differ between training and inference: the stacked forward with
    ``train_flg=False`` is each slice's inference forward (dropout's expected value, batch
    norm's running averages, moved off their start by a training forward first)."""
    s = backends.to_device(RNG.standard_normal((3, 4, 5)))
    norm = BatchNormalization(backends.to_device(RNG.random(5) + 0.5),
                              backends.to_device(RNG.standard_normal(5)), momentum=0.5)
    norm.forward(backends.to_device(3 + 2 * RNG.standard_normal((6, 5))), train_flg=True)
    for layer in (Dropout(0.3, seed=1), norm):
        stacked = to_host(layer.forward_stack(s, False))
        for k in range(3):
            np.testing.assert_allclose(stacked[k], to_host(layer.forward(s[k, ...], False)),
                                       rtol=1e-13, atol=1e-15, err_msg=type(layer).__name__)


def test_an_empty_batch_has_no_loss_but_an_empty_shard_weighs_nothing(xp):
    """Alone, a batch of no samples is refused (its mean is 0 / 0); inside a data-parallel
    step, a process whose shard of a short last batch is empty has a loss of 0 and no
    gradient, and takes its part in the step all the same (tests/framework/
    test_distributed.py runs it under mpiexec)."""
    from framework import sharding
    x = backends.to_device(np.zeros((0, 3)))
    t = backends.to_device(np.zeros(0, dtype=np.int64))
    layer = SoftmaxWithLoss()
    with pytest.raises(ValueError, match="SoftmaxWithLoss: an empty batch \\(0 samples\\) has "
                                         "no mean loss"):
        layer.forward(x, t)
    with sharding.sharded(sharding.Shard(0, 0, 1)):
        assert float(layer.forward(x, t)) == 0.0
        assert tuple(layer.backward().shape) == (0, 3)
    with pytest.raises(ValueError, match="an empty batch"):  # the shard over: refused again
        layer.forward(x, t)
    full = backends.to_device(RNG.standard_normal((2, 3)))
    assert float(layer.forward(full, backends.to_device([0, 2]))) > 0  # and on it goes
    with pytest.raises(ValueError, match="an empty batch"):  # numerical_gradient's check
        SoftmaxWithLoss().check_inputs(x, t)
    with sharding.sharded(sharding.Shard(0, 0, 1)):
        SoftmaxWithLoss().check_inputs(x, t)  # a shard's: nothing to say


@pytest.mark.parametrize("make, name, message", [
    (lambda a: Affine([[1.0, 2.0]], a(np.zeros(2))), "W", "Affine: W must be an array"),
    (lambda a: Affine(a(np.ones((1, 2))), [0.0, 0.0]), "b", "Affine: b must be an array"),
    (lambda a: Convolution([[[[1.0]]]], a(np.zeros(1))), "W", "Convolution: W must be an array"),
    (lambda a: Convolution(a(np.ones((1, 1, 1, 1))), (0.0,)), "b",
     "Convolution: b must be an array"),
    (lambda a: BatchNormalization([1.0], a(np.zeros(1))), "gamma",
     "BatchNormalization: gamma must be an array"),
    (lambda a: BatchNormalization(a(np.ones(1)), [0.0]), "beta",
     "BatchNormalization: beta must be an array")],
    ids=["affine-W", "affine-b", "conv-W", "conv-b", "bn-gamma", "bn-beta"])
def test_parameters_that_are_not_arrays_are_named_by_the_layer(backend, make, name, message):
    """A list where the book passes an array ended in "'list' object has no attribute
    'ndim'" (or 'shape')."""
    with pytest.raises(TypeError, match=rf"^{message}, got (list|tuple); convert it first "):
        make(lambda h: backend.asarray(h, "float32"))


def test_parameters_of_two_libraries_are_refused_when_the_layer_is_built(backend):
    """W on the backend under test, b in NumPy (or the other way round): the first forward
    pass failed in the library's words, far from where the layer was built."""
    if backend.name == "numpy":
        pytest.skip("needs a backend besides NumPy")
    W, b = backend.asarray(np.ones((2, 2)), "float32"), np.zeros(2, dtype=np.float32)
    for make in (lambda: Affine(W, b), lambda: Affine(np.ones((2, 2), np.float32),
                                                      backend.asarray(np.zeros(2), "float32")),
                 lambda: BatchNormalization(backend.asarray(np.ones(2), "float32"), b),
                 lambda: Convolution(backend.asarray(np.ones((2, 1, 1, 1)), "float32"), b)):
        with pytest.raises(TypeError, match=r"arrays from different backends"):
            make()


@pytest.mark.parametrize("momentum", ["0.9", True, None, float("nan")])
def test_batch_norm_momentum_that_is_not_a_number_is_named(xp, momentum):
    """A string was "'<=' not supported between instances of 'int' and 'str'"; True was
    taken as 1."""
    with pytest.raises(ValueError, match=rf"^BatchNormalization: momentum must lie in "
                                         rf"\[0, 1\], got {re.escape(repr(momentum))}$"):
        BatchNormalization(backends.to_device(np.ones(2)), backends.to_device(np.zeros(2)),
                           momentum=momentum)


def test_a_number_for_the_bias_is_that_bias_for_every_output(xp):
    """The book's ``ch07/apply_filter.py`` convolves with one trained filter and ``b = 0``,
    a Python number its NumPy broadcasts: ``Convolution(w, 0)`` said "b must be an array,
    got int". A number is that bias for each filter (each output of ``Affine``), in W's
    dtype on W's device."""
    rng = np.random.default_rng(4)
    w = backends.to_device(rng.standard_normal((1, 1, 3, 3)), "float32")
    img = backends.to_device(rng.random((1, 1, 6, 6)), "float32")
    for b in (0, 0.5):
        conv = Convolution(w, b)
        want = Convolution(w, backends.to_device(np.full(1, b), "float32")).forward(img)
        assert backends.dtype_name(conv.b.dtype) == "float32" and tuple(conv.b.shape) == (1,)
        np.testing.assert_array_equal(to_host(conv.forward(img)), to_host(want))
    W = backends.to_device(rng.standard_normal((4, 3)), "float32")
    affine = Affine(W, 1)
    np.testing.assert_array_equal(to_host(affine.b), [1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match=r"^Affine: b must be an array, got bool"):
        Affine(W, True)
