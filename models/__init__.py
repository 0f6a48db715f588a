"""Networks built from :mod:`framework.layers` on the shared walk of :class:`models.base.Network`."""

from models.base import Network
from models.deep_convnet import DeepConvNet
from models.multi_layer_net import MultiLayerNet, MultiLayerNetExtend
from models.simple_convnet import SimpleConvNet
from models.two_layer_net import TwoLayerNet

__all__ = ["Network", "TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet",
           "DeepConvNet"]
