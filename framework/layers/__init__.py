"""The layers of chapters 5 to 7, one concept a module, each a plain class.

Every layer has the book's ``forward`` and ``backward`` and takes its array
module from its inputs, so one object works on NumPy and CuPy arrays. Where
we differ from the book, the class docstring says so and why.

Each subclasses :class:`framework.layers.base.Layer`, which gives the
defaults the network walk reads (``takes_train_flg``, ``buffers``, a
side-effect-free ``forward_stack`` and ``perturbed_outputs`` for the
vectorised numerical gradient): its docstring says what each means.
"""

from framework.layers.activations import Relu, Sigmoid
from framework.layers.affine import Affine
from framework.layers.arithmetic import AddLayer, MulLayer
from framework.layers.base import Layer
from framework.layers.batch_norm import BatchNormalization
from framework.layers.convolution import Convolution
from framework.layers.dropout import Dropout
from framework.layers.pooling import Pooling
from framework.layers.softmax_loss import SoftmaxWithLoss
from framework.layers.sync_batch_norm import SyncBatchNormalization

__all__ = ["Layer", "MulLayer", "AddLayer", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss",
           "BatchNormalization", "SyncBatchNormalization", "Dropout", "Convolution", "Pooling"]
