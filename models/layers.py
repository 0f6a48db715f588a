"""A network's layers: the book's ``OrderedDict`` of them, in the order the data flows.

The book's networks keep their layers in an ``OrderedDict`` that a reader may change
(``network.layers["Relu1"] = Sigmoid()``, to see what another activation does). A
:class:`Layers` is one, whose every layer put in is taken in as a
:class:`framework.layers.base.Layer`: a layer of the reader's own, written as the book
writes one, is adopted (:func:`framework.layers.adopted.adopt`) as it is put in, so that
the network's walk reads what it needs of every layer without probing.
"""

from collections import OrderedDict

from framework.layers.adopted import adopt


class Layers(OrderedDict):
    """``{name: layer}``, in order; ``owner`` names the network in errors."""

    def __init__(self, owner):
        super().__init__()
        self.owner = owner

    def __setitem__(self, name, layer):
        super().__setitem__(name, adopt(layer, name, f"{self.owner}.layers[{name!r}]"))

    def update(self, *args, **kwargs):
        for name, layer in OrderedDict(*args, **kwargs).items():
            self[name] = layer

    def setdefault(self, name, layer=None):
        if name not in self:
            self[name] = layer
        return self[name]

    def __reduce__(self):
        # a copy or a pickle: the owner's name, then the layers (adopted as they come)
        return type(self), (self.owner,), None, None, iter(self.items())
