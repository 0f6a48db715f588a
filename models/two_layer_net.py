"""TwoLayerNet of 5.7: Affine -> Relu -> Affine -> SoftmaxWithLoss."""

from collections import OrderedDict

import backends
from framework.layers import Affine, Relu, SoftmaxWithLoss
from models.base import Network, float_dtype
from models.multi_layer_net import check_size


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
    ``predict``, ``loss``, ``accuracy``, ``gradient``, ``numerical_gradient``,
    ``save_params`` and ``load_params`` come from :class:`models.base.Network`,
    the walk every model shares.
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *,
                 dtype=None, seed=None):
        backend = backends.current()
        xp = backend.xp
        self.dtype = float_dtype("TwoLayerNet", xp, dtype)
        self.sizes = tuple(check_size("TwoLayerNet", what, value) for what, value in (
            ("input_size", input_size), ("hidden_size", hidden_size),
            ("output_size", output_size)))
        rng = backends.host_rng(seed)

        def draw(*shape):
            return backend.asarray(weight_init_std * rng.standard_normal(shape), self.dtype)

        self.params = {
            "W1": draw(*self.sizes[:2]),
            "b1": xp.zeros(self.sizes[1], dtype=self.dtype),
            "W2": draw(*self.sizes[1:]),
            "b2": xp.zeros(self.sizes[2], dtype=self.dtype),
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
