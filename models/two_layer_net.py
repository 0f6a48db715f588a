"""TwoLayerNet of 5.7: Affine -> Relu -> Affine -> SoftmaxWithLoss."""

from collections import OrderedDict

import backends
from backends import get_array_module
from framework import gradient as _gradient
from framework.layers import Affine, Relu, SoftmaxWithLoss
from models.base import Network


class TwoLayerNet(Network):
    """The book's two-layer network, on whichever backend is current when it is built.

    ``params`` holds ``W1, b1, W2, b2``; ``layers`` holds ``Affine1, Relu1,
    Affine2`` in order; ``last_layer`` is the ``SoftmaxWithLoss``. Weights are
    ``weight_init_std * N(0, 1)`` drawn on the host from
    ``numpy.random.default_rng(seed)`` and then sent to the backend, so a seed
    gives the same network on the CPU and the GPU. ``dtype`` defaults to
    float32; use float64 for gradient checks.

    The layers hold the very arrays in ``params``, so updating ``params[k]``
    in place (``-=``) trains the network, as in the book's loop.
    ``save_params`` / ``load_params`` (from :class:`models.base.Network`)
    write and read checkpoints.
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *,
                 dtype=None, seed=None):
        backend = backends.current()
        xp = backend.xp
        self.dtype = xp.dtype(dtype or "float32")
        if self.dtype.kind != "f":
            raise ValueError(f"TwoLayerNet: dtype must be a floating type, got {self.dtype}")
        self.sizes = (int(input_size), int(hidden_size), int(output_size))
        rng = backends.host_rng(seed)

        def draw(*shape):
            return backend.asarray(weight_init_std * rng.standard_normal(shape), self.dtype)

        self.params = {
            "W1": draw(input_size, hidden_size),
            "b1": xp.zeros(hidden_size, dtype=self.dtype),
            "W2": draw(hidden_size, output_size),
            "b2": xp.zeros(output_size, dtype=self.dtype),
        }
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"], name="Affine1")
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"], name="Affine2")
        # The first layer's input is data: its gradient is never used.
        self.layers["Affine1"].input_grad = False
        self.last_layer = SoftmaxWithLoss()
        # which layer holds each parameter, as the layer names it
        self.param_layout = {"W1": ("Affine1", "W"), "b1": ("Affine1", "b"),
                             "W2": ("Affine2", "W"), "b2": ("Affine2", "b")}

    def config(self):
        """The architecture, as checkpoints record it."""
        return dict(zip(("input_size", "hidden_size", "output_size"), self.sizes))

    @property
    def lastLayer(self):  # noqa: N802 - the book's spelling
        return self.last_layer

    def predict(self, x):
        """Scores (before softmax) for a batch ``x`` of shape ``(N, input_size)`` or ``(N, ...)``"""
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)  # per batch: never a float64 copy of a whole dataset
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        """Mean cross-entropy loss, as an array scalar on the network's backend."""
        y = self.predict(x)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=10000):
        """Fraction of ``x`` classified as ``t`` (labels or one-hot), as a Python float.

        Evaluates ``batch_size`` samples at a time and counts on the backend,
        so memory stays bounded and the value is read once at the end.
        """
        xp = get_array_module(self.params["W1"])
        n = x.shape[0]
        if n == 0:
            raise ValueError("TwoLayerNet.accuracy: empty batch")
        correct = 0
        for i in range(0, n, batch_size):
            tb = t[i:i + batch_size]
            if tb.ndim != 1:
                tb = tb.argmax(axis=1)
            y = self.predict(x[i:i + batch_size]).argmax(axis=1)
            correct = correct + xp.count_nonzero(y == tb)
        return float(correct) / n

    def numerical_gradient(self, x, t, h=1e-4):
        """Gradients of the loss by central differences, for checking ``gradient``.

        The book perturbs one weight at a time and runs the whole network
        twice per weight (79,520 forward passes for 784-50-10). Here each
        Affine layer computes its output for thousands of single-weight
        perturbations at once (``Affine.perturbed_outputs``) and the layers
        after it run on that stack, so the whole check takes a few dozen
        vectorised passes. The values equal the element-by-element
        definition (:func:`framework.gradient.numerical_gradient` on
        ``loss``) to about 1e-12 in float64.
        """
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        names = list(self.layers)
        inputs = {}
        for name in names:  # the unperturbed pass: each layer's input
            inputs[name] = x
            x = self.layers[name].forward(x)
        grads = {}
        for key, (name, param) in self.param_layout.items():
            layer = self.layers[name]
            after = [self.layers[n] for n in names[names.index(name) + 1:]]

            def losses(index, delta, layer=layer, after=after, name=name, param=param):
                s = layer.perturbed_outputs(inputs[name], param, index, delta)
                for later in after:
                    s = later.forward_stack(s)
                return self.last_layer.forward_stack(s, t)

            grads[key] = _gradient.numerical_gradient_stacked(losses, self.params[key], h)
        return grads

    def numerical_gradient_elementwise(self, x, t, h=1e-4):
        """The book's definition: two full forward passes per weight (slow; the reference)."""
        def loss_w(_):
            return self.loss(x, t)
        return {key: _gradient.numerical_gradient(loss_w, self.params[key], h)
                for key in self.params}

    def gradient(self, x, t):
        """Gradients of the loss by backpropagation: forward, then every backward in reverse."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        return {
            "W1": self.layers["Affine1"].dW, "b1": self.layers["Affine1"].db,
            "W2": self.layers["Affine2"].dW, "b2": self.layers["Affine2"].db,
        }
