"""TwoLayerNet of 5.7: Affine -> Relu -> Affine -> SoftmaxWithLoss."""

from framework.layers import Affine, Relu, SoftmaxWithLoss
from models.base import Network
from models.checks import check_size, init_scale


class TwoLayerNet(Network):
    """The book's two-layer network, on whichever backend is current when it is built.

    ``params`` holds ``W1, b1, W2, b2``; ``layers`` holds ``Affine1, Relu1,
    Affine2`` in order; ``last_layer`` is the ``SoftmaxWithLoss``. Weights are
    ``weight_init_std * N(0, 1)`` (a positive number, the book's 0.01 by default, or, as
    chapter 6's networks take it, 'relu'/'he' or 'sigmoid'/'xavier') drawn on the host from
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
        self.sizes = tuple(check_size("TwoLayerNet", what, value) for what, value in (
            ("input_size", input_size), ("hidden_size", hidden_size),
            ("output_size", output_size)))
        d_in, hidden, d_out = self.sizes
        stds = [init_scale("TwoLayerNet", weight_init_std, fan_in) for fan_in in (d_in, hidden)]
        self.begin(dtype, seed)
        self.add("Affine", Affine, W=self.weights(d_in, hidden, std=stds[0]),
                 b=self.zeros(hidden))
        self.add("Relu", Relu)
        self.add("Affine", Affine, W=self.weights(hidden, d_out, std=stds[1]),
                 b=self.zeros(d_out))
        self.finish(SoftmaxWithLoss())

    def config(self):
        """The architecture, as checkpoints record it."""
        return dict(zip(("input_size", "hidden_size", "output_size"), self.sizes))
