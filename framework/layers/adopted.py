"""A layer of the user's own, written as the book writes one, taken into a network.

The book's layers are plain classes with ``forward`` and ``backward``, and so is a layer
a reader writes after them (the README's ``LeakyRelu``, checked with
:func:`framework.testing.check_backward`). A network here walks its layers through
what :class:`framework.layers.base.Layer` gives every layer (``takes_train_flg``,
``buffers``, ``saved``, ``forward_stack`` for the numerical gradient...), read without
probing on every step, so such a layer put in ``network.layers`` failed with
``'LeakyRelu' object has no attribute 'takes_train_flg'``.

:func:`adopt` gives the layer those defaults behind its own methods: its class becomes
a subclass of its own class and of ``Layer`` (made once per class), with
``takes_train_flg`` true where its ``forward`` takes ``train_flg`` (the book's Dropout
and BatchNormalization do). It stays an instance of its class, with its attributes and
methods; a copy or a pickle is one of its own class, adopted again as it is loaded.

A loss layer of the user's own (``forward(x, t)``, ``backward(dout=1)``: the book's
SoftmaxWithLoss written out) is adopted with ``loss=True``: its default
``forward_stack(s, t)``, which the numerical gradient calls, is its ``forward`` on each
copy of the stack in turn.
"""

import functools
import inspect

from backends import get_array_module
from framework.layers.base import Layer


class LossDefaults(Layer):
    """What an adopted loss layer gets beyond :class:`Layer`'s defaults."""

    def forward_stack(self, x, t):
        """Losses ``(K,)`` of a stack of scores ``(K, N, C)`` against the same labels: its
        ``forward`` on each in turn, its attributes put back after (a check, not a step)."""
        xp = get_array_module(x)
        attributes = dict(vars(self))
        try:
            return xp.stack([xp.asarray(self.forward(x[k, ...], t))
                             for k in range(x.shape[0])])
        finally:
            vars(self).clear()
            vars(self).update(attributes)


#: the attributes of Layer's that a network reads as names of a layer's own attributes,
#: which a layer of the user's own may use for something else
NAMES = {"buffers": "its running state (saved with the network)",
         "saved": "what its forward keeps for backward (freed after an evaluation)"}


def adopt(layer, name, where, loss=False):
    """``layer`` as a :class:`Layer` (itself where it is one already) named ``name`` unless
    it has a name: see the module. ``TypeError`` naming ``where``
    (``"TwoLayerNet.layers['Relu1']"``) for an object without ``forward`` and
    ``backward``, one whose ``buffers`` or ``saved`` mean something else than a
    :class:`Layer`'s (:data:`NAMES`), or one whose class cannot be extended (a class with
    ``__slots__``)."""
    if isinstance(layer, Layer):
        return layer
    kind = type(layer)
    missing = [m for m in ("forward", "backward") if not callable(getattr(layer, m, None))]
    if missing:
        raise TypeError(f"{where}: {kind.__name__} has no {' or '.join(missing)}; a layer "
                        f"has forward(x) and backward(dout) (framework.layers.Layer gives "
                        f"the rest)")
    for attr, meaning in NAMES.items():  # a tuple of names, as Layer's are, or refused:
        value = getattr(layer, attr, ())  # a list (self.saved = []) holds what it keeps
        if not (isinstance(value, tuple) and all(isinstance(v, str) for v in value)):
            raise TypeError(f"{where}: {kind.__name__}.{attr} is {type(value).__name__}, but "
                            f"a network reads a layer's {attr} as the names of {meaning}; "
                            f"rename {kind.__name__}'s {attr}")
    try:
        layer.__class__ = _adopted(kind, loss)
    except TypeError as e:  # __slots__, a builtin's layout
        raise TypeError(f"{where}: {kind.__name__} cannot be taken into a network as it is "
                        f"({e}); subclass framework.layers.Layer (class "
                        f"{kind.__name__}(Layer)) instead") from None
    if getattr(layer, "name", None) is None:
        layer.name = name
    return layer


@functools.cache
def _adopted(kind, loss):
    """The subclass of ``kind`` and :class:`Layer` (:class:`LossDefaults` for a ``loss``
    layer) an adopted ``kind`` becomes (one per class, kept for the process: classes are
    few and live as long)."""
    try:
        takes = "train_flg" in inspect.signature(kind.forward).parameters
    except (TypeError, ValueError):  # a builtin's forward: no signature to read
        takes = False
    return type(kind.__name__, (kind, LossDefaults if loss else Layer), {
        "__module__": kind.__module__, "__qualname__": kind.__qualname__,
        "__doc__": kind.__doc__, "takes_train_flg": takes, "adopted_from": kind,
        "__reduce_ex__": _reduce_ex})


def _reduce_ex(self, protocol):
    """A copy or a pickle of an adopted layer: an instance of its own class (which pickle
    can find by name) and its state, adopted again as it is made."""
    return _readopt, (type(self).adopted_from, self.__getstate__(),
                      isinstance(self, LossDefaults))


def _readopt(kind, state, loss=False):
    layer = kind.__new__(kind)
    setstate = getattr(layer, "__setstate__", None)  # a class that pickles its own way
    if setstate is not None:
        setstate(state)
    else:
        vars(layer).update(state)
    return adopt(layer, kind.__name__, kind.__name__, loss)
