"""DeepConvNet of chapter 8: six 3x3 convolutions in pairs, each pair pooled, then two Affine."""

import math
from functools import partial

from framework.layers import Affine, Convolution, Dropout, Pooling, Relu, SoftmaxWithLoss
from models.base import Network
from models.checks import check_size, conv_settings, image_dims

DEFAULT_CONVS = [
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
]


class DeepConvNet(Network):
    """The book's deep network (about 99% on MNIST), on whichever backend is current when built.

    conv - relu - conv - relu - pool - conv - relu - conv - relu - pool -
    conv - relu - conv - relu - pool - affine - relu - dropout - affine -
    dropout - softmax, as the book's ``ch08/deep_convnet.py``, with He
    initialisation (std sqrt(2 / fan_in)) and dropout ratio 0.5. Parameters
    ``W1 ... W8``, ``b1 ... b8``; layers ``Conv1 ... Conv6``, ``Relu1 ...
    Relu7``, ``Pool1 ... Pool3``, ``Affine1``, ``Affine2``, ``Dropout1``,
    ``Dropout2``. The first Affine's input size is computed from
    ``input_dim`` (the book writes 64 * 4 * 4, right for 28 x 28 only).

    ``loss(x, t)`` evaluates in inference (dropout off) unless ``train_flg=True``, as every
    network here; the book's DeepConvNet.loss always runs in training mode, drawing a new
    dropout mask each call. ``gradient`` trains, as the book's.
    """

    # Conv2's columns for 200 images are 90 MB in float32 (226 MB for 500): evaluation
    # stays well inside the GPU target of the dataset plus 512 MB, beside the graph's pool
    accuracy_batch_size = 200

    def __init__(self, input_dim=(1, 28, 28), conv_param_1=None, conv_param_2=None,
                 conv_param_3=None, conv_param_4=None, conv_param_5=None, conv_param_6=None,
                 hidden_size=50, output_size=10, *, dtype=None, seed=None):
        owner = type(self).__name__
        self.input_dim = image_dims(owner, input_dim)
        given = [conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5,
                 conv_param_6]
        self.conv_params = [conv_settings(owner, dict(default) if p is None else p,
                                          f"conv_param_{i + 1}")
                            for i, (p, default) in enumerate(zip(given, DEFAULT_CONVS))]
        self.hidden_size = check_size(owner, "hidden_size", hidden_size)
        self.output_size = check_size(owner, "output_size", output_size)

        def he(*shape, fan_in):  # He initialisation, as the book
            return self.weights(*shape, std=math.sqrt(2.0 / fan_in))

        self.begin(dtype, seed)
        shape = tuple(self.input_dim)
        for i, p in enumerate(self.conv_params, 1):
            size, c = p["filter_size"], shape[0]
            conv = self.add("Conv", partial(Convolution, stride=p["stride"], pad=p["pad"]),
                            W=he(p["filter_num"], c, size, size, fan_in=c * size * size),
                            b=self.zeros(p["filter_num"]))
            shape = conv.output_shape(shape)
            self.add("Relu", Relu)
            if i % 2 == 0:
                shape = self.add("Pool", partial(Pooling, 2, 2, stride=2)).output_shape(shape)
        flat = shape[0] * shape[1] * shape[2]
        self.add("Affine", Affine, W=he(flat, self.hidden_size, fan_in=flat),
                 b=self.zeros(self.hidden_size))
        self.add("Relu", Relu)
        self.add("Dropout", partial(Dropout, 0.5, seed=self.dropout_seed()))
        self.add("Affine", Affine, W=he(self.hidden_size, self.output_size,
                                        fan_in=self.hidden_size),
                 b=self.zeros(self.output_size))
        self.add("Dropout", partial(Dropout, 0.5, seed=self.dropout_seed()))
        self.finish(SoftmaxWithLoss())

    def config(self):
        """Every constructor argument (not dtype or seed), as checkpoints record it."""
        out = {"input_dim": self.input_dim}
        out.update({f"conv_param_{i}": p for i, p in enumerate(self.conv_params, 1)})
        out.update(hidden_size=self.hidden_size, output_size=self.output_size)
        return out
