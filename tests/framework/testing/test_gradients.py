"""framework/testing/gradients.py: the checks pass on right layers and fail, readably, on
wrong ones."""

import re

import numpy as np
import pytest

import backends
from framework.layers import Affine, MulLayer, Relu, Sigmoid
from framework.testing import check_backward, check_model
from models import TwoLayerNet
from tests.conftest import to_host

RNG = np.random.default_rng(13)


def affine(xp, dtype="float64"):
    W = backends.to_device(RNG.standard_normal((4, 3)), dtype)
    b = backends.to_device(RNG.standard_normal(3), dtype)
    return Affine(W, b), backends.to_device(RNG.standard_normal((5, 4)), dtype)


class SignFlippedRelu(Relu):
    def backward(self, dout):
        return -super().backward(dout)


class AffineMissingBias(Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = self.db * 0  # forgets the bias term
        return dx


class Forgetful(Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = None  # never kept
        return dx


class SwappedMul(MulLayer):
    def backward(self, dout):
        dx, dy = super().backward(dout)
        return dy, dx  # each input's gradient handed to the other


class Doubler:
    """A layer with a generator: forward draws a new scale each call unless rewound."""

    buffers = ("counter",)

    def __init__(self, xp):
        self.counter = backends.to_device(np.zeros(1))  # on the device under test

    def forward(self, x):
        self.scale = 1.0 + self.counter  # differs per call: only a rewind makes it repeat
        self.counter += 1
        return x * self.scale

    def backward(self, dout):
        return dout * self.scale


def test_random_directions_are_steps_of_eps_whatever_the_size(xp):
    """mode="random" steps eps along unit directions: its error is of eps squared's order
    for an array of any size, as the full mode's. A direction of 600 standard-normal
    entries left unnormalised steps some 24 eps, and its difference is ~50x as far off."""
    x = backends.to_device(np.random.default_rng(0).standard_normal((20, 30)) * 2)
    report = check_backward(Sigmoid(), x, mode="random")
    assert report["input 0"] < 1e-9, report


@pytest.mark.parametrize("mode", ["full", "random"])
def test_right_layers_pass(xp, mode):
    layer, x = affine(xp)
    report = check_backward(layer, x, params=("W", "b"), mode=mode)
    assert set(report) == {"input 0", "W", "b"} and max(report.values()) < 1e-8
    x = backends.to_device(RNG.choice([-1.0, 1.0], (3, 4)) * (0.1 + RNG.random((3, 4))))
    check_backward(Relu(), x, mode=mode)
    check_backward(Sigmoid(), x, mode=mode)
    check_backward(MulLayer(), (x, backends.to_device(RNG.standard_normal((3, 4)))), mode=mode)


@pytest.mark.parametrize("mode", ["full", "random"])
def test_a_sign_flip_fails_with_the_worst_elements(xp, mode):
    x = backends.to_device(RNG.choice([-1.0, 1.0], (3, 4)) * (0.1 + RNG.random((3, 4))))
    with pytest.raises(AssertionError) as e:
        check_backward(SignFlippedRelu(), x, mode=mode)
    text = str(e.value)
    assert "SignFlippedRelu gradient of input 0" in text
    assert "analytic" in text and "numerical" in text and "relative error 2" in text
    if mode == "full":
        assert "outside |a - n|" in text and "at (" in text


def test_a_missing_term_fails_on_that_parameter_only(xp):
    layer, x = affine(xp)
    layer.__class__ = AffineMissingBias
    with pytest.raises(AssertionError, match="AffineMissingBias gradient of b:"):
        check_backward(layer, x, params=("W", "b"))
    check_backward(layer, x, params=("W",))  # W and the input are right


class SlightlyOffAffine(Affine):
    """dW off by a relative 1e-4: what a float32 intermediate or a wrong constant gives."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = self.dW * (1 + 1e-4)
        return dx


class SigmoidMissingASmallTerm(Sigmoid):
    """The derivative without a term of 1e-3 of its size: out (1 - out) (1 - 1e-3 out)."""

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out * (1 - 1e-3 * self.out)


@pytest.mark.parametrize("mode", ["full", "random"])
def test_small_errors_fail_at_the_default_tolerances(xp, mode):
    """A gradient off by a relative 1e-4, or missing a term of 1e-3 of its size, is caught:
    float64 central differences agree with a right gradient to about 1e-9 here."""
    layer, x = affine(xp)
    layer.__class__ = SlightlyOffAffine
    with pytest.raises(AssertionError, match="SlightlyOffAffine gradient of W"):
        check_backward(layer, x, params=("W",), mode=mode)
    x = backends.to_device(RNG.standard_normal((3, 4)))
    with pytest.raises(AssertionError, match="SigmoidMissingASmallTerm gradient of input 0"):
        check_backward(SigmoidMissingASmallTerm(), x, mode=mode)
    check_backward(Sigmoid(), x, mode=mode)  # the right one passes on the same input


@pytest.mark.parametrize("mode", ["full", "random"])
def test_a_gradient_for_the_wrong_input_fails(xp, mode):
    x, y = (backends.to_device(RNG.standard_normal((2, 3))) for _ in range(2))
    with pytest.raises(AssertionError, match="gradient of input 0"):
        check_backward(SwappedMul(), (x, y), mode=mode)


def test_float32_layers_are_checked_in_float64_and_left_as_they_were(xp):
    layer, x = affine(xp, "float32")
    W = layer.W
    before = to_host(W).copy()
    check_backward(layer, x, params=("W", "b"))
    assert layer.W is W and backends.dtype_name(layer.W.dtype) == "float32"
    np.testing.assert_array_equal(to_host(layer.W), before)
    layer.__class__ = AffineMissingBias
    with pytest.raises(AssertionError, match=r"checked in float64; the layer was given input 0 "
                                             r"\(float32\), W \(float32\), b \(float32\)"):
        check_backward(layer, x, params=("W", "b"))


def test_buffers_are_rewound_before_each_evaluation(xp):
    layer = Doubler(xp)
    check_backward(layer, backends.to_device(RNG.standard_normal((2, 3))))
    assert float(layer.counter[0]) == 0.0  # and after the check
    layer.buffers = ()  # without the rewind, every evaluation sees another scale
    with pytest.raises(AssertionError):
        check_backward(layer, backends.to_device(RNG.standard_normal((2, 3))))


def test_a_backward_that_returns_nothing_fails_instead_of_checking_nothing(xp):
    """A backward that forgot ``return dx`` returned None, which check_backward took for
    an input not to differentiate (labels): nothing was checked, and the check passed."""

    class Forgot:
        def forward(self, x):
            self.x = x
            return x * 2

        def backward(self, dout):
            dout * 2  # computed, never returned

    x = xp.asarray(np.ones((2, 3)))
    with pytest.raises(AssertionError, match=r"^check_backward: nothing to check: "
                                             r"Forgot.backward returned None for every "
                                             r"floating-point input, and params names none"):
        check_backward(Forgot(), x)


def test_integer_inputs_are_named_before_the_layer_runs(xp):
    """Integer inputs cannot be differenced: the check said "backward returned no array for
    every floating-point input" (there was none), or array-api-strict failed in the user's
    backward with a type-promotion error between float64 and int64."""

    class Square:
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, dout):
            return 2 * dout * self.x

    x = backends.to_device(np.array([[1, 2], [3, 4]]))
    with pytest.raises(TypeError, match=r"^check_backward: nothing to difference: input 0 is "
                                        r"int64; central differences need a floating-point "
                                        r"input"):
        check_backward(Square(), x)
    check_backward(Square(), backends.to_device(np.array([[1.0, 2.0], [3.0, 4.0]])))


@pytest.mark.parametrize("change, message", [
    (lambda g: {k: v for k, v in g.items() if k != "b2"},
     r"returned no gradient for 'b2' \(the parameters: W1, b1, W2, b2\)"),  # was KeyError
    (lambda g: {**g, "W9": g["W1"]}, r"returned gradients for 'W9', which are no parameters"),
    (lambda g: {**g, "W1": g["W1"][:, :1]},  # was NumPy's "index 10 is out of bounds"
     r"returned 'W1' of shape \(4, 1\); the parameter has \(4, 3\)")])
def test_check_model_names_gradients_that_do_not_fit_the_parameters(xp, change, message):
    net = TwoLayerNet(4, 3, 2, dtype="float64", seed=0)
    gradient = net.gradient
    net.gradient = lambda x, t: change(gradient(x, t))
    x = backends.to_device(np.random.default_rng(0).random((2, 4)))  # on the net's device
    with pytest.raises(AssertionError, match=rf"^check_model: TwoLayerNet.gradient {message}"):
        check_model(net, x, backends.to_device(np.array([0, 1])))


def test_bad_arguments(xp):
    layer, x = affine(xp)
    with pytest.raises(ValueError, match="mode='fast'; expected 'full' or 'random'"):
        check_backward(layer, x, mode="fast")
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3\), the output \(5, 3\)"):
        check_backward(layer, x, dout=xp.ones((2, 3)))
    # a misspelt parameter: its name and the arrays the layer has (was an AttributeError
    # from inside the check); one name alone is a list of one
    with pytest.raises(ValueError, match=r"params=\['W', 'bias'\]: Affine has no attribute "
                                         r"'bias'; its floating-point arrays: W, b"):
        check_backward(layer, x, params=["W", "bias"])
    assert set(check_backward(layer, x, params="W")) == {"input 0", "W"}
    # a step of 0 was 0 / 0: NaN everywhere, reported as a wrong gradient; 0 directions
    # ended in NumPy's 'need at least one array to stack'
    for eps in (0, -1e-4, float("inf"), "1e-4"):
        with pytest.raises(ValueError, match=rf"^check_backward: eps must be a finite number "
                                             rf"above 0 \(the step of the central "
                                             rf"differences\), got {re.escape(repr(eps))}$"):
            check_backward(layer, x, eps=eps)
    for directions in (0, 2.5, True):
        with pytest.raises(ValueError, match=rf"^check_backward: directions must be a whole "
                                             rf"number at least 1 \(the random directions per "
                                             rf"array, mode='random'\), got {directions!r}$"):
            check_backward(layer, x, mode="random", directions=directions)
    assert set(check_backward(layer, x, mode="random", directions=1)) == {"input 0"}
    # one name of several letters, too (a string is not a list of one-letter names)
    from framework.layers import BatchNormalization
    norm = BatchNormalization(backends.to_device(np.ones(4)), backends.to_device(np.zeros(4)))
    assert set(check_backward(norm, x, params="gamma")) == {"input 0", "gamma"}
    # a backward that stores no gradient for a named parameter: said, not a None compared
    with pytest.raises(AssertionError, match=r"^check_backward: Forgetful has no dW after "
                                             r"backward$"):
        check_backward(Forgetful(layer.W, layer.b), x, params=("W", "b"))
    # a nested list: the layer's own TypeError came from inside its forward
    with pytest.raises(TypeError, match="input 0 is a list; expected an array"):
        check_backward(layer, [[1.0, 2.0, 3.0]])
    # a flat list is one input's data, not several inputs of one number each (it said
    # "nothing to difference: input 0 is float, input 1 is float")
    with pytest.raises(TypeError, match=r"^check_backward: inputs is a list of numbers; "
                                        r"expected an array"):
        check_backward(Relu(), [1.0, -2.0])


class Quadratic:
    """A network of a user's own with the book's params, loss and gradient, and neither a
    numerical_gradient nor a dtype: L = sum((x W)^2), dL/dW = 2 x^T (x W)."""

    def __init__(self, xp, scale=2):
        self.xp, self.scale = xp, scale
        self.params = {"W": backends.to_device(RNG.standard_normal((3, 2)))}

    def loss(self, x, t):
        return self.xp.sum((x @ self.params["W"]) ** 2)

    def gradient(self, x, t):
        return {"W": self.scale * x.T @ (x @ self.params["W"])}


def test_check_model_differences_a_network_of_ones_own(xp):
    x, t = backends.to_device(RNG.standard_normal((4, 3))), None
    report = check_model(Quadratic(xp), x, t)
    assert list(report) == ["W"] and report["W"][1] < 1e-8
    with pytest.raises(AssertionError, match=r"Quadratic \(float64\): gradient and numerical_"
                                             r"gradient differ for W\n"):
        check_model(Quadratic(xp, scale=3), x, t)


class BookStyle:
    """A network of a user's own as the book writes one: its layers hold the very arrays
    of a plain-dict ``params`` (``Affine(W, b)``), with no numerical_gradient."""

    def __init__(self):
        from framework.layers import SoftmaxWithLoss
        rng = np.random.default_rng(3)
        self.params = {"W1": backends.to_device(rng.standard_normal((4, 5))),
                       "b1": backends.to_device(np.zeros(5))}
        self.affine, self.last = Affine(self.params["W1"], self.params["b1"]), SoftmaxWithLoss()

    def loss(self, x, t):
        return self.last.forward(self.affine.forward(x), t)

    def gradient(self, x, t):
        self.loss(x, t)
        self.affine.backward(self.last.backward(1))
        return {"W1": self.affine.dW, "b1": self.affine.db}


def test_a_book_style_network_on_immutable_arrays_fails_saying_why(backend):
    """On JAX the book's element loop puts each moved array in the plain dict, which the
    layers never read: every difference was 0, and the failure blamed the gradient."""
    x = backends.to_device(np.random.default_rng(4).random((3, 4)))
    t = backends.to_device(np.array([0, 1, 2]))
    if backend.mutable:
        check_model(BookStyle(), x, t)
        return
    with pytest.raises(AssertionError, match=r"differ for W1, b1; every difference of W1, b1 "
                                             r"is 0, and jax's arrays are immutable: .*build "
                                             r"the network on models.base.Network"):
        check_model(BookStyle(), x, t)


def test_check_model_holds_a_float64_model_to_float64s_tolerance(xp):
    """A gradient off by 1e-3 of itself passes float16's tolerance (1e-2) but not float64's,
    which a float64 model is held to."""
    x, t = backends.to_device(RNG.standard_normal((4, 3))), None
    with pytest.raises(AssertionError, match="gradient and numerical_gradient differ for W"):
        check_model(Quadratic(xp, scale=2 * (1 + 1e-3)), x, t)
    # its dtype said as NumPy's scalar type, as users write it: the same float64 tolerance
    # (it was read as an unknown name, "float64'>", and held to float32's, 1e-3)
    off = Quadratic(xp, scale=2 * (1 + 1e-4))
    off.dtype = np.float64
    with pytest.raises(AssertionError, match="gradient and numerical_gradient differ for W"):
        check_model(off, x, t)


class KeepdimsBias(Affine):
    """db summed with keepdims: (1, out), where b is (out,)."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.db = backends.get_array_module(dout).sum(dout, axis=0, keepdims=True)
        return dx


def test_a_gradient_of_another_shape_is_named(xp):
    layer, x = affine(xp)
    layer = KeepdimsBias(layer.W, layer.b)
    with pytest.raises(AssertionError, match=r"KeepdimsBias gradient of b: backward gave shape "
                                             r"\(1, 3\), the array has \(3,\)"):
        check_backward(layer, x, params=("W", "b"))


def test_a_float32_failure_says_to_check_in_float64(xp):
    net = TwoLayerNet(12, 6, 4, seed=1, weight_init_std=0.5)  # float32, the default
    x, t = backends.to_device(RNG.random((2, 12)).astype("float32")), backends.to_device([0, 1])
    with pytest.raises(AssertionError, match=r"TwoLayerNet \(float32\): .*: build the network "
                                             r"with dtype='float64' to check it"):
        check_model(net, x, t, rtol=1e-12, atol=0)


def test_check_model_passes_and_fails_readably(xp):
    # inputs of their own generator, every hidden unit's input at least 0.05 from ReLU's
    # kink: drawn from the module's RNG, they hung on which tests had drawn before (one
    # test more put a unit 3.3e-5 from 0 where PyTorch is not installed)
    net = TwoLayerNet(12, 6, 4, dtype="float64", seed=1, weight_init_std=0.5)
    x = backends.to_device(np.random.default_rng(5).random((5, 12)))
    t = backends.to_device([0, 1, 2, 3, 1])
    report = check_model(net, x, t)
    assert list(report) == ["W1", "b1", "W2", "b2"]
    assert all(diff < 1e-8 and rel < 1e-5 for diff, rel in report.values())
    real = net.gradient
    net.gradient = lambda x, t: dict(real(x, t), b2=real(x, t)["b2"] * 2)
    with pytest.raises(AssertionError) as e:
        check_model(net, x, t)
    text = str(e.value)
    assert "TwoLayerNet (float64): gradient and numerical_gradient differ for b2" in text
    assert "W1: max abs diff" in text and "ok" in text and "b2: max abs diff" in text
    assert "FAIL" in text


def test_a_failure_at_a_relu_kink_says_so(xp):
    """Book-sized initial weights (0.01) put a hidden unit's input 9.2e-5 from 0, inside the
    numerical gradient's h = 1e-4: b1's central difference straddles ReLU's kink and is off
    by 3%, with nothing wrong in gradient. The failure names the layer and the value."""
    net = TwoLayerNet(4, 5, 3, dtype="float64", seed=0)
    x = backends.to_device(np.random.default_rng(0).standard_normal((3, 4)))
    t = backends.to_device([0, 1, 2])
    with pytest.raises(AssertionError, match=r"differ for b1; Relu1's input holds 1 value "
                                             r"within h=0.0001 of 0 \(the closest 9.2e-05\): "
                                             r"central differences there straddle ReLU's kink"):
        check_model(net, x, t)
    far = backends.to_device(np.random.default_rng(1).standard_normal((3, 4)))
    check_model(net, far, t)  # no unit that close: the same network passes


def test_check_model_of_a_model_without_parameters_says_so():
    """A model without ``params`` was an AttributeError from inside the check, and one whose
    params are empty a bare StopIteration."""
    class Gradientless:
        def loss(self, x, t):
            return 0.0

        def gradient(self, x, t):
            return {}
    x, t = np.ones((2, 4)), np.array([0, 1])
    for params, said in ((None, "none"), ({}, "{}")):
        model = Gradientless()
        if params is not None:
            model.params = params
        with pytest.raises(TypeError, match=rf"^check_model: Gradientless has no parameters to "
                                            rf"check: expected the book's params, a dict of "
                                            rf"arrays by name \(got {re.escape(said)}\)$"):
            check_model(model, x, t)


@pytest.mark.backends("numpy", "cupy", "torch", "array_api_strict")  # JAX's cannot be written
def test_a_forward_that_writes_into_its_input_is_named(xp):
    """A forward that zeroed its input in place (the book's Relu copies first for this)
    failed as a wrong gradient: "analytic 0, numerical 0.32"."""

    class ZeroingInPlace:
        def forward(self, x):
            self.mask = xp.astype(x > 0, x.dtype)
            x *= self.mask  # the caller's array
            return x

        def backward(self, dout):
            return dout * self.mask

    x = backends.to_device(np.linspace(-1, 1, 12).reshape(3, 4) + 0.05)
    with pytest.raises(AssertionError, match=r"^check_backward: ZeroingInPlace\.forward changed "
                                             r"input 0 in place \(6 of 12 elements\)"):
        check_backward(ZeroingInPlace(), x)
    assert float(xp.min(x)) < 0  # the caller's array is the check's copy's, untouched


@pytest.mark.backends("numpy", "cupy", "torch", "array_api_strict")
def test_a_backward_that_writes_into_dout_or_reuses_a_buffer_is_checked_right(xp):
    """Both are fine in a network (the book's Relu writes into dout), and both failed the
    check: a backward scaling dout in place scaled the check's own dout ("analytic 2.6,
    numerical 5.2"); one returning a buffer that forward writes saw its gradient overwritten
    by the differences' forward passes."""

    class ScalesDoutInPlace:
        def forward(self, x):
            return x * 3

        def backward(self, dout):
            dout *= 3
            return dout

    class ReusesABuffer:
        work = None

        def forward(self, x):
            if self.work is None:
                self.work = x * x
            self.work *= 0
            self.work += x * x  # forward's own buffer, written each pass...
            self.x = x
            return self.work * 1

        def backward(self, dout):
            self.work *= 0
            self.work += 2 * self.x * dout  # ...which backward hands back
            return self.work

    x = backends.to_device(RNG.standard_normal((3, 4)))
    for layer in (ScalesDoutInPlace(), ReusesABuffer()):
        assert check_backward(layer, x)["input 0"] < 1e-8, type(layer).__name__
