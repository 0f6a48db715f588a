"""The computational-graph nodes of 5.4: multiply and add, on numbers or arrays."""

import numbers

from backends.arrays import is_array
from framework.layers.base import Layer


def _check_operands(layer, x, y):
    """``TypeError`` naming the layer and an operand that is neither a number nor an array:
    Python's ``*`` and ``+`` take text and lists too, and answer without a word (``'100' *
    2`` is ``'100100'``, as a price read with ``input()`` would be)."""
    for name, value in (("x", x), ("y", y)):
        if not (isinstance(value, numbers.Number) or is_array(value)):
            hint = (f": float({value!r}) for a number read as text" if isinstance(value, str)
                    else ": numpy.asarray(...) for a list" if isinstance(value, (list, tuple))
                    else "")
            raise TypeError(f"{layer.name}.forward: {name} is {type(value).__name__} "
                            f"{value!r}; expected a number or an array{hint}")


class MulLayer(Layer):
    """out = x * y;  dx = dout * y,  dy = dout * x.

    Works on Python numbers as well as arrays (the apple shop of 5.4).
    """

    saved = ("x", "y")

    def __init__(self, name=None):
        super().__init__(name)
        self.x = None
        self.y = None

    def forward(self, x, y):
        _check_operands(self, x, y)
        self.x = x
        self.y = y
        return x * y

    def backward(self, dout):
        try:
            dx = dout * self.y  # each input's gradient is the other input
            dy = dout * self.x
        except Exception:  # what kind the library raises for None
            self._check_kept()
            raise
        return dx, dy


class AddLayer(Layer):
    """out = x + y;  dx = dy = dout."""

    def __init__(self, name=None):
        super().__init__(name)

    def forward(self, x, y):
        _check_operands(self, x, y)
        return x + y

    def backward(self, dout):
        dx = dout * 1
        dy = dout * 1
        return dx, dy
