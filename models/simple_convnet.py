"""SimpleConvNet of chapter 7: Conv -> ReLU -> Pool -> Affine -> ReLU -> Affine -> Softmax."""

from functools import partial

from framework.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from models.base import Network
from models.checks import DEFAULT_CONV, check_size, conv_settings, image_dims, init_scale


class SimpleConvNet(Network):
    """The book's simple convolutional network, on whichever backend is current when built.

    ``params``: ``W1, b1`` (the filters, ``(filter_num, C, size, size)``),
    ``W2, b2`` and ``W3, b3`` (the two Affine layers); ``layers``: ``Conv1,
    Relu1, Pool1 (2x2, stride 2), Affine1, Relu2, Affine2``. Weights are
    ``weight_init_std * N(0, 1)`` (a number, or 'relu'/'he' or
    'sigmoid'/'xavier' per layer) drawn on the host from the seed, float32
    by default. The first layer skips its input gradient.
    """

    accuracy_batch_size = 500  # its columns for 500 images: 29 MB in float32

    def __init__(self, input_dim=(1, 28, 28), conv_param=None, hidden_size=100, output_size=10,
                 weight_init_std=0.01, *, dtype=None, seed=None):
        owner = type(self).__name__
        self.input_dim = image_dims(owner, input_dim)
        self.conv_param = conv_settings(owner, dict(DEFAULT_CONV) if conv_param is None
                                        else conv_param)
        self.hidden_size = check_size(owner, "hidden_size", hidden_size)
        self.output_size = check_size(owner, "output_size", output_size)
        self.weight_init_std = weight_init_std
        p = self.conv_param
        c, size = self.input_dim[0], p["filter_size"]

        def std(fan_in):
            return init_scale(owner, weight_init_std, fan_in)

        self.begin(dtype, seed)
        conv = self.add("Conv", partial(Convolution, stride=p["stride"], pad=p["pad"]),
                        W=self.weights(p["filter_num"], c, size, size, std=std(c * size * size)),
                        b=self.zeros(p["filter_num"]))
        self.add("Relu", Relu)
        pool = self.add("Pool", partial(Pooling, 2, 2, stride=2))
        flat = 1
        for n in pool.output_shape(conv.output_shape(tuple(self.input_dim))):
            flat *= n
        self.add("Affine", Affine, W=self.weights(flat, self.hidden_size, std=std(flat)),
                 b=self.zeros(self.hidden_size))
        self.add("Relu", Relu)
        self.add("Affine", Affine, W=self.weights(self.hidden_size, self.output_size,
                                                  std=std(self.hidden_size)),
                 b=self.zeros(self.output_size))
        self.finish(SoftmaxWithLoss())

    def config(self):
        """Every constructor argument (not dtype or seed), as checkpoints record it."""
        return {"input_dim": self.input_dim, "conv_param": self.conv_param,
                "hidden_size": self.hidden_size, "output_size": self.output_size,
                "weight_init_std": self.weight_init_std}
