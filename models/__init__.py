"""Networks built from :mod:`framework.layers`."""

from models.two_layer_net import TwoLayerNet

__all__ = ["TwoLayerNet"]
