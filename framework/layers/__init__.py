"""The layers of chapters 5 to 7, one concept a module, each a plain class.

Every layer has the book's ``forward`` and ``backward`` and takes its array
module from its inputs, so one object works on NumPy and CuPy arrays. Where
we differ from the book, the class docstring says so and why.

Two more conventions, used by :class:`models.base.Network`:

``takes_train_flg``
    True for layers whose ``forward(x, train_flg)`` differs between
    training and inference (batch norm, dropout; convolution, which keeps
    its columns for ``backward`` in training only); the network passes the flag.
``buffers``
    names of the non-parameter arrays a layer keeps (batch norm's running
    averages, dropout's generator position): the network's state, saved in
    checkpoints and restored by :func:`framework.testing.check_backward`.

And, for the vectorised numerical gradient, ``forward_stack(x[, train_flg])``
evaluates a stack ``(K, N, ...)`` of inputs without side effects, and
``perturbed_outputs(x, param, index, delta)`` gives the outputs of K copies
of a layer, copy k with one parameter element moved.
"""

from framework.layers.activations import Relu, Sigmoid
from framework.layers.affine import Affine
from framework.layers.arithmetic import AddLayer, MulLayer
from framework.layers.batch_norm import BatchNormalization
from framework.layers.convolution import Convolution
from framework.layers.dropout import Dropout
from framework.layers.pooling import Pooling
from framework.layers.softmax_loss import SoftmaxWithLoss

__all__ = ["MulLayer", "AddLayer", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss",
           "BatchNormalization", "Dropout", "Convolution", "Pooling"]
