"""SimpleConvNet of chapter 7: Conv -> ReLU -> Pool -> Affine -> ReLU -> Affine -> Softmax."""

from collections import OrderedDict

import backends
from framework.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from models.base import Network, float_dtype
from models.multi_layer_net import check_size, init_scale

DEFAULT_CONV = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


def conv_settings(owner, conv_param, what="conv_param"):
    """A checked copy of a book-style ``conv_param`` dict (filter_num, filter_size, pad, stride)."""
    if not isinstance(conv_param, dict) or set(conv_param) != set(DEFAULT_CONV):
        raise ValueError(f"{owner}: {what} must be a dict with the keys "
                         f"{', '.join(DEFAULT_CONV)}; got {conv_param!r}")
    out = {key: check_size(owner, f"{what}['{key}']", conv_param[key])
           for key in ("filter_num", "filter_size", "stride")}
    pad = conv_param["pad"]
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"{owner}: {what}['pad'] must be an integer of at least 0, got {pad!r}")
    out["pad"] = int(pad)
    return {key: out[key] for key in DEFAULT_CONV}


def image_dims(owner, input_dim):
    try:
        dims = [check_size(owner, f"input_dim[{i}]", v) for i, v in enumerate(input_dim)]
    except TypeError:
        dims = []
    if len(dims) != 3:
        raise ValueError(f"{owner}: input_dim must be (channels, height, width), got {input_dim!r}")
    return dims


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
        backend = backends.current()
        xp = backend.xp
        self.dtype = float_dtype(owner, xp, dtype)
        self.input_dim = image_dims(owner, input_dim)
        self.conv_param = conv_settings(owner, dict(DEFAULT_CONV) if conv_param is None
                                        else conv_param)
        self.hidden_size = check_size(owner, "hidden_size", hidden_size)
        self.output_size = check_size(owner, "output_size", output_size)
        self.weight_init_std = weight_init_std
        p = self.conv_param
        c = self.input_dim[0]
        size = p["filter_size"]
        rng = backends.host_rng(seed)

        def draw(*shape, fan_in):
            scale = init_scale(owner, weight_init_std, fan_in)
            return backend.asarray(scale * rng.standard_normal(shape), self.dtype)

        self.params = {"W1": draw(p["filter_num"], c, size, size, fan_in=c * size * size),
                       "b1": xp.zeros(p["filter_num"], dtype=self.dtype)}
        conv = Convolution(self.params["W1"], self.params["b1"], p["stride"], p["pad"],
                           name="Conv1")
        pool = Pooling(2, 2, stride=2, name="Pool1")
        flat = 1
        for n in pool.output_shape(conv.output_shape(tuple(self.input_dim))):
            flat *= n
        self.params["W2"] = draw(flat, self.hidden_size, fan_in=flat)
        self.params["b2"] = xp.zeros(self.hidden_size, dtype=self.dtype)
        self.params["W3"] = draw(self.hidden_size, self.output_size, fan_in=self.hidden_size)
        self.params["b3"] = xp.zeros(self.output_size, dtype=self.dtype)
        self.layers = OrderedDict()
        self.layers["Conv1"] = conv
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = pool
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"], name="Affine1")
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"], name="Affine2")
        conv.input_grad = False  # its input is data
        self.last_layer = SoftmaxWithLoss()
        self.param_layout = {"W1": ("Conv1", "W"), "b1": ("Conv1", "b"),
                             "W2": ("Affine1", "W"), "b2": ("Affine1", "b"),
                             "W3": ("Affine2", "W"), "b3": ("Affine2", "b")}

    def config(self):
        """Every constructor argument (not dtype or seed), as checkpoints record it."""
        return {"input_dim": self.input_dim, "conv_param": self.conv_param,
                "hidden_size": self.hidden_size, "output_size": self.output_size,
                "weight_init_std": self.weight_init_std}
