"""The computational-graph nodes of 5.4: multiply and add, on numbers or arrays."""

from framework.layers.base import Layer


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
        return x + y

    def backward(self, dout):
        dx = dout * 1
        dy = dout * 1
        return dx, dy
