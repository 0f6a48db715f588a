"""Networks of any depth (chapter 6): MultiLayerNet and MultiLayerNetExtend.

(Affine -> [BatchNorm] -> activation -> [Dropout]) x len(hidden_size_list),
then Affine -> SoftmaxWithLoss, as the book's ``common/multi_layer_net.py``
and ``common/multi_layer_net_extend.py`` build them.
"""

import math
import numbers
from collections import OrderedDict

import backends
from framework.layers import (Affine, BatchNormalization, Dropout, Relu, Sigmoid,
                              SoftmaxWithLoss)
from models.base import Network, float_dtype

ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}
#: named initial scales: std = sqrt(gain / fan_in)
INIT_GAINS = {"relu": 2.0, "he": 2.0, "sigmoid": 1.0, "xavier": 1.0}


def check_size(owner, what, value):
    """``value`` as a positive int, or ``ValueError`` naming ``owner`` and ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}: {what} must be a positive integer, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{owner}: {what} must be at least 1, got {value}")
    return int(value)


def init_scale(owner, weight_init_std, fan_in):
    """The std of a layer's initial weights: a number, or 'relu'/'he' (sqrt(2 / fan_in))
    or 'sigmoid'/'xavier' (sqrt(1 / fan_in))."""
    if isinstance(weight_init_std, str):
        gain = INIT_GAINS.get(weight_init_std.lower())
        if gain is None:
            raise ValueError(f"{owner}: weight_init_std={weight_init_std!r} is not a known "
                             f"initialisation; expected a number or one of "
                             f"{', '.join(repr(k) for k in INIT_GAINS)}")
        return math.sqrt(gain / fan_in)
    try:
        scale = float(weight_init_std)
    except (TypeError, ValueError):
        scale = float("nan")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{owner}: weight_init_std must be a positive number or a name, got "
                         f"{weight_init_std!r}")
    return scale


class MultiLayerNet(Network):
    """The book's fully connected network with ReLU or sigmoid hidden layers.

    ``hidden_size_list`` may be empty (softmax regression). Parameters
    ``W1, b1, ..., Wn, bn`` (n = len(hidden_size_list) + 1); layers
    ``Affine1, Activation_function1, ..., Affinen``. Weights are
    ``scale * N(0, 1)`` drawn on the host from ``numpy.random.default_rng(seed)``
    and sent to the current backend, so a seed gives the same network on the
    CPU and the GPU; ``weight_init_std`` is a number or 'relu'/'he'
    (sqrt(2 / fan_in)) or 'sigmoid'/'xavier' (sqrt(1 / fan_in)), taken per
    layer. ``weight_decay_lambda`` adds the book's L2 penalty to ``loss``
    and ``gradient``. ``dtype`` defaults to float32.
    """

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0, *, dtype=None, seed=None):
        self._build(input_size, hidden_size_list, output_size, activation, weight_init_std,
                    weight_decay_lambda, dtype, seed)

    def _build(self, input_size, hidden_size_list, output_size, activation, weight_init_std,
               weight_decay_lambda, dtype, seed, use_dropout=False, dropout_ration=0.5,
               use_batchnorm=False):
        owner = type(self).__name__
        backend = backends.current()
        xp = backend.xp
        self.dtype = float_dtype(owner, xp, dtype)
        self.input_size = check_size(owner, "input_size", input_size)
        try:
            hidden = list(hidden_size_list)
        except TypeError:
            raise ValueError(f"{owner}: hidden_size_list must be a list of layer sizes, got "
                             f"{hidden_size_list!r}") from None
        self.hidden_size_list = [check_size(owner, f"hidden_size_list[{i}]", h)
                                 for i, h in enumerate(hidden)]
        self.output_size = check_size(owner, "output_size", output_size)
        if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
            raise ValueError(f"{owner}: activation={activation!r}; expected one of "
                             f"{', '.join(repr(k) for k in ACTIVATIONS)}")
        self.activation = activation.lower()
        self.weight_init_std = weight_init_std
        try:
            lam = float(weight_decay_lambda)
        except (TypeError, ValueError):
            lam = float("nan")
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"{owner}: weight_decay_lambda must be 0 or more, got "
                             f"{weight_decay_lambda!r}")
        self.weight_decay_lambda = lam
        self.use_dropout = bool(use_dropout)
        if isinstance(dropout_ration, bool) or not isinstance(dropout_ration, numbers.Real) \
                or not 0 <= dropout_ration < 1:
            raise ValueError(f"{owner}: dropout_ration must lie in [0, 1), got "
                             f"{dropout_ration!r}")
        self.dropout_ration = float(dropout_ration)
        self.use_batchnorm = bool(use_batchnorm)
        self.hidden_layer_num = len(self.hidden_size_list)

        sizes = [self.input_size] + self.hidden_size_list + [self.output_size]
        rng = backends.host_rng(seed)
        self.params = {}
        for idx in range(1, len(sizes)):
            scale = init_scale(owner, weight_init_std, sizes[idx - 1])
            self.params[f"W{idx}"] = backend.asarray(
                scale * rng.standard_normal((sizes[idx - 1], sizes[idx])), self.dtype)
            self.params[f"b{idx}"] = xp.zeros(sizes[idx], dtype=self.dtype)

        # dropout keys come from a stream of their own: the weights of a seed
        # are the same with and without dropout
        keys = backends.host_rng(None if seed is None else [seed, 1])
        self.layers = OrderedDict()
        self.param_layout = {}
        for idx in range(1, self.hidden_layer_num + 2):
            affine = f"Affine{idx}"
            self.layers[affine] = Affine(self.params[f"W{idx}"], self.params[f"b{idx}"],
                                         name=affine)
            self.param_layout[f"W{idx}"] = (affine, "W")
            self.param_layout[f"b{idx}"] = (affine, "b")
            if idx > self.hidden_layer_num:
                break
            if self.use_batchnorm:
                size = sizes[idx]
                self.params[f"gamma{idx}"] = xp.ones(size, dtype=self.dtype)
                self.params[f"beta{idx}"] = xp.zeros(size, dtype=self.dtype)
                self.layers[f"BatchNorm{idx}"] = BatchNormalization(
                    self.params[f"gamma{idx}"], self.params[f"beta{idx}"],
                    name=f"BatchNorm{idx}")
                self.param_layout[f"gamma{idx}"] = (f"BatchNorm{idx}", "gamma")
                self.param_layout[f"beta{idx}"] = (f"BatchNorm{idx}", "beta")
            self.layers[f"Activation_function{idx}"] = ACTIVATIONS[self.activation]()
            if self.use_dropout:
                self.layers[f"Dropout{idx}"] = Dropout(
                    dropout_ration, seed=int(keys.integers(2**63)), name=f"Dropout{idx}")
        # The first layer's input is data: its gradient is never used.
        self.layers["Affine1"].input_grad = False
        self.last_layer = SoftmaxWithLoss()
        # the book's order: weights and biases first, then batch norm's
        self.param_layout = {k: self.param_layout[k] for k in self.params}

    def config(self):
        """Every constructor argument (not dtype or seed), as checkpoints record it."""
        return {"input_size": self.input_size, "hidden_size_list": self.hidden_size_list,
                "output_size": self.output_size, "activation": self.activation,
                "weight_init_std": self.weight_init_std,
                "weight_decay_lambda": self.weight_decay_lambda}


class MultiLayerNetExtend(MultiLayerNet):
    """:class:`MultiLayerNet` with Batch Normalization and Dropout, as the book's extended net.

    ``use_batchnorm`` puts a ``BatchNorm<i>`` (parameters ``gamma<i>``,
    ``beta<i>``) between each hidden Affine and its activation;
    ``use_dropout`` a ``Dropout<i>`` (ratio ``dropout_ration``, the book's
    spelling) after each activation. Dropout's generators are seeded from
    ``seed``, so a seeded run repeats exactly.
    """

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0, use_dropout=False,
                 dropout_ration=0.5, use_batchnorm=False, *, dtype=None, seed=None):
        self._build(input_size, hidden_size_list, output_size, activation, weight_init_std,
                    weight_decay_lambda, dtype, seed, use_dropout, dropout_ration,
                    use_batchnorm)

    def config(self):
        return dict(super().config(), use_dropout=self.use_dropout,
                    dropout_ration=self.dropout_ration, use_batchnorm=self.use_batchnorm)
