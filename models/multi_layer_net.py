"""Networks of any depth (chapter 6): MultiLayerNet and MultiLayerNetExtend.

(Affine -> [BatchNorm] -> activation -> [Dropout]) x len(hidden_size_list),
then Affine -> SoftmaxWithLoss, as the book's ``common/multi_layer_net.py``
and ``common/multi_layer_net_extend.py`` build them.
"""

from functools import partial

from framework.layers import (Affine, BatchNormalization, Dropout, Relu, Sigmoid,
                              SoftmaxWithLoss)
from models.base import Network
from models.checks import (check_choice, check_decay, check_flag, check_ratio, check_size,
                           check_sizes, init_scale)

ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


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
        self.input_size = check_size(owner, "input_size", input_size)
        self.hidden_size_list = check_sizes(owner, "hidden_size_list", hidden_size_list)
        self.output_size = check_size(owner, "output_size", output_size)
        self.activation = check_choice(owner, "activation", activation, ACTIVATIONS)
        self.weight_init_std = weight_init_std
        self.weight_decay_lambda = check_decay(owner, weight_decay_lambda)
        self.use_dropout = check_flag(owner, "use_dropout", use_dropout)
        self.dropout_ration = check_ratio(owner, "dropout_ration", dropout_ration)
        self.use_batchnorm = check_flag(owner, "use_batchnorm", use_batchnorm)
        self.hidden_layer_num = len(self.hidden_size_list)

        self.begin(dtype, seed)
        sizes = [self.input_size] + self.hidden_size_list + [self.output_size]
        for layer, (fan_in, size) in enumerate(zip(sizes, sizes[1:]), 1):
            std = init_scale(owner, weight_init_std, fan_in)
            self.add("Affine", Affine, W=self.weights(fan_in, size, std=std), b=self.zeros(size))
            if layer > self.hidden_layer_num:
                break  # the output layer
            if self.use_batchnorm:
                self.add("BatchNorm", BatchNormalization, gamma=self.ones(size), beta=self.zeros(size))
            self.add("Activation_function", ACTIVATIONS[self.activation])
            if self.use_dropout:
                self.add("Dropout", partial(Dropout, self.dropout_ration, seed=self.dropout_seed()))
        self.finish(SoftmaxWithLoss())
        # the book's order: weights and biases first, then batch norm's
        self.reorder(sorted(self.params, key=lambda k: k.startswith(("gamma", "beta"))))

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
