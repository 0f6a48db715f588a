"""A network's parameters: the book's ``params`` dict, whose rebinding reaches the layers.

The book's layers hold the very arrays ``params`` holds (``Affine(W, b)``), and the
book's optimizers change them in place (``params[key] -= lr * grads[key]``), so a layer
sees every update. JAX's arrays cannot change: there ``params[key] -= ...`` binds a new
array to the key, and the layer would keep computing with the old one. A
:class:`Parameters` passes each such binding on to the layer attribute the parameter
lives in (``param_layout``: ``"W1" -> ("Affine1", "W")``), so the book's code, the
optimizers and checkpoint loading work unchanged on every library. Where arrays are
changed in place nothing is rebound and nothing is passed on.
"""


class Parameters(dict):
    """``{name: array}`` whose ``params[name] = array`` also sets the layer attribute the
    name stands for (see the module). ``layers`` and ``layout`` are the network's own
    dicts, filled as it builds its stack."""

    #: what the Trainer and the compiled step ask of a network's params on JAX: that a new
    #: array bound to a name reaches the layer that computes with it
    reaches_layers = True

    def __init__(self, layers, layout):
        super().__init__()
        self._layers, self._layout = layers, layout

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, value)
        where = self._layout.get(key)
        if where is not None:
            layer = self._layers.get(where[0])
            if layer is not None:  # not yet, while the stack is built
                setattr(layer, where[1], value)

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __reduce__(self):  # a pickle or deepcopy keeps the layers' view
        return (_rebuild, (self._layers, self._layout, dict(self)))


def _rebuild(layers, layout, items):
    params = Parameters(layers, layout)
    dict.update(params, items)
    return params
