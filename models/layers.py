"""A network's layers: the book's ``OrderedDict`` of them, in the order the data flows.

The book's networks keep their layers in an ``OrderedDict`` that a reader may change
(``network.layers["Relu1"] = Sigmoid()``, to see what another activation does). A
:class:`Layers` is one, whose every layer put in is taken in as a
:class:`framework.layers.base.Layer`: a layer of the reader's own, written as the book
writes one, is adopted (:func:`framework.layers.adopted.adopt`) as it is put in, so that
the network's walk reads what it needs of every layer without probing. A layer put in
or taken out also tells the network, which forgets where it read its gradients from
(a replaced Affine's ``dW`` was read from the layer it replaced).
"""

import weakref
from collections import OrderedDict

from framework.layers.adopted import adopt


class Layers(OrderedDict):
    """``{name: layer}``, in order, of ``network`` (held weakly; named in errors)."""

    def __init__(self, network):
        super().__init__()
        self.owner = type(network).__name__
        self.network = weakref.ref(network)

    def _changed(self):
        network = self.network() if self.network is not None else None
        if network is not None:
            network.layers_changed()

    def __setitem__(self, name, layer):
        super().__setitem__(name, adopt(layer, name, f"{self.owner}.layers[{name!r}]"))
        self._changed()

    def __delitem__(self, name):
        super().__delitem__(name)
        self._changed()

    def pop(self, name, *default):
        out = super().pop(name, *default)
        self._changed()
        return out

    def popitem(self, last=True):
        out = super().popitem(last)
        self._changed()
        return out

    def clear(self):
        super().clear()
        self._changed()

    def update(self, *args, **kwargs):
        for name, layer in OrderedDict(*args, **kwargs).items():
            self[name] = layer

    def setdefault(self, name, layer=None):
        if name not in self:
            self[name] = layer
        return self[name]

    def __reduce__(self):
        # a copy or a pickle: the layers (adopted as they come), the network's name; the
        # network links itself again as it is rebuilt (Network.__setstate__)
        return _rebuilt, (self.owner,), None, None, iter(self.items())


def _rebuilt(owner):
    layers = OrderedDict.__new__(Layers)
    OrderedDict.__init__(layers)
    layers.owner, layers.network = owner, None
    return layers
