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
    dicts, filled as it builds its stack.

    Once the network is built (``fixed``) its names are fixed and each stays an array of
    its shape and dtype: an array of another shape, dtype or library bound to a name is a
    ``ValueError`` (the book's plain dict took it, to fail far away or to mix float64 into
    a float32 network without a word), as is a new name (an array no layer reads) or a
    name removed (a parameter the optimizers would pass over while its layer goes on
    computing with it), and so is a PyTorch tensor that requires gradients (the
    optimizers' in-place updates fail on one, or grow its autograd history every step).
    Comparing a shape and a dtype is all a rebinding costs."""

    #: what the Trainer and the compiled step ask of a network's params on JAX: that a new
    #: array bound to a name reaches the layer that computes with it
    reaches_layers = True

    def __init__(self, layers, layout, fixed=False):
        super().__init__()
        self._layers, self._layout = layers, layout
        self.fixed = fixed  # set when the network is built (Network.finish)

    def __setitem__(self, key, value):
        old = dict.get(self, key)
        if old is not None:
            try:
                fits = value.shape == old.shape and (
                    value.dtype == old.dtype if type(value) is type(old)
                    else _same_library_and_dtype(value, old))  # a JAX tracer, say
            except Exception:  # not an array
                fits = False
            if not fits:
                self._refuse(key, old, value)
            if getattr(value, "requires_grad", False):  # a PyTorch tensor in its autograd
                raise ValueError(
                    f"params[{key!r}]: a tensor that requires gradients (PyTorch's autograd "
                    f"refuses in-place updates of such a leaf and records each update of "
                    f"one computed from it); xpnet computes its own gradients: bind "
                    f"tensor.detach(), which shares its memory")
        elif self.fixed:
            raise ValueError(f"params has no {key!r}: a network's parameters are the ones it "
                             f"was built with ({', '.join(self)}); an array bound to another "
                             f"name would reach no layer")
        dict.__setitem__(self, key, value)
        where = self._layout.get(key)
        if where is not None:
            layer = self._layers.get(where[0])
            if layer is not None:  # not yet, while the stack is built
                setattr(layer, where[1], value)

    @staticmethod
    def _refuse(key, old, value):
        from backends import backend_of, is_array
        expected = f"an array of shape {tuple(old.shape)} and dtype {old.dtype} on " \
                   f"{backend_of(old).name}, as it was"
        if not is_array(value):
            got = type(value).__name__
        else:
            got = f"shape {tuple(value.shape)}, dtype {value.dtype} on {backend_of(value).name}"
        raise ValueError(f"params[{key!r}]: expected {expected}; got {got} (convert it with "
                         f"backends.to_device(a, dtype), or load a file with load_params)")

    def _removal(self, *args):
        if self.fixed:
            raise TypeError(f"a network's parameters cannot be removed ({', '.join(self)}): "
                            f"the layers would go on computing with them and the optimizers "
                            f"pass them over")

    def __delitem__(self, key):
        self._removal()
        dict.__delitem__(self, key)

    def pop(self, *args):
        self._removal()
        return dict.pop(self, *args)

    def popitem(self):
        self._removal()
        return dict.popitem(self)

    def clear(self):
        self._removal()
        dict.clear(self)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other):
        self.update(other)
        return self

    def __reduce__(self):  # a pickle or deepcopy keeps the layers' view
        return (_rebuild, (self._layers, self._layout, dict(self), self.fixed))


def _same_library_and_dtype(a, b):
    """Whether arrays of two types are of one library and dtype (a compiled step's traced
    array and the concrete one it stands for), without comparing two libraries' dtypes
    (which the standard's libraries warn of)."""
    from backends import dtype_name
    from backends.registry import REGISTRY
    return REGISTRY.class_of(a) is REGISTRY.class_of(b) and \
        dtype_name(a.dtype) == dtype_name(b.dtype)


def _rebuild(layers, layout, items, fixed=False):
    params = Parameters(layers, layout, fixed)
    dict.update(params, items)
    return params
