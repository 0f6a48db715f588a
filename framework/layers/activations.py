"""Activation layers: ReLU and sigmoid."""

from backends import ops_for
from backends.arrays import dtype_kind
from backends.registry import REGISTRY
from framework.functions import _real, sigmoid
from framework.layers.base import Layer


class Relu(Layer):
    """out = max(0, x);  dx = dout where x > 0, else 0.

    As the book: 0 where x <= 0 (-inf included), a NaN passed on. ``mask``
    is True where x <= 0, as in the book (and where x is NaN, which gets no
    gradient). Unlike the book,
    ``backward`` returns a new array and leaves the caller's ``dout``
    untouched (the book zeroes it in place).
    """

    saved = ("keep",)

    def __init__(self, name=None):
        super().__init__(name)
        self.keep = None  # what relu_backward takes back: x > 0, the book's mask's complement

    @property
    def mask(self):
        """The book's mask: True where x <= 0."""
        return None if self.keep is None else ops_for(self.keep).relu_mask(self.keep)

    def forward(self, x):
        kind = (type(x), REGISTRY.generation)
        if kind != self._kind:  # a new library (or new settings): its operations
            self._bind(x, kind)
        out, self.keep = self._ops.relu(x)  # one kernel for both on a GPU
        return out

    def backward(self, dout):
        ops = self._ops if type(dout) is self._xtype else self._dout_ops(dout)
        try:
            return ops.relu_backward(dout, self.keep)
        except Exception:  # what kind the library raises for None
            self._check_kept(dout=dout)
            raise

    def forward_stack(self, x, train_flg=True):
        """The forward pass without side effects, for stacks ``(K, N, ...)`` (see Affine)."""
        return ops_for(x).relu(x, mask=False)[0]


class Sigmoid(Layer):
    """out = 1 / (1 + exp(-x));  dx = dout * out * (1 - out).

    The forward pass is the overflow-free :func:`framework.functions.sigmoid` (the
    operations' ``sigmoid``), integers and bools taken as the library's default floating
    type; backward the operations' ``sigmoid_backward``.
    """

    saved = ("out",)
    _integers = False  # whether the kind of input bound is integers or bools (see _bind)

    def __init__(self, name=None):
        super().__init__(name)
        self.out = None

    def _bind(self, x, kind):
        super()._bind(x, kind)
        self._integers = dtype_kind(x.dtype) in "iub"

    def forward(self, x):
        try:
            kind = (type(x), x.dtype, REGISTRY.generation)
        except AttributeError:
            self._check_arrays("forward", x=x)
            raise
        if kind != self._kind:  # a new library, dtype or settings: its operations, and
            self._bind(x, kind)  # whether the input is taken as floats, decided once
        if self._integers:
            x = _real(self.name, x)
        self.out = self._ops.sigmoid(x)
        return self.out

    def backward(self, dout):
        if type(dout) is not type(self.out):  # a list would pass on NumPy alone
            self._check_kept(dout=dout)
        try:
            return self._ops.sigmoid_backward(dout, self.out)
        except Exception:  # what kind the library raises for None
            self._check_kept(dout=dout)
            raise

    def forward_stack(self, x, train_flg=True):
        """The forward pass without side effects, for stacks ``(K, N, ...)`` (see Affine)."""
        return sigmoid(x)
