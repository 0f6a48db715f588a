"""Networks built from :mod:`framework.layers` on the shared walk of :class:`models.base.Network`."""

from models.base import Network
from models.multi_layer_net import MultiLayerNet, MultiLayerNetExtend
from models.two_layer_net import TwoLayerNet

__all__ = ["Network", "TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend"]
