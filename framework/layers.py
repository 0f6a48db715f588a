"""The layers of chapter 5, each a plain class with ``forward`` and ``backward``.

Every layer takes its array module from its inputs, so one object works on
NumPy and CuPy arrays. Where we differ from the book, the class docstring
says so and why.
"""

from backends import check_same_backend, get_array_module, is_device_array
from backends.ops import ops_for
from framework.functions import sigmoid


class MulLayer:
    """out = x * y;  dx = dout * y,  dy = dout * x.

    Works on Python numbers as well as arrays (the apple shop of 5.4).
    """

    def __init__(self):
        self.x = None
        self.y = None

    def forward(self, x, y):
        self.x = x
        self.y = y
        return x * y

    def backward(self, dout):
        dx = dout * self.y  # each input's gradient is the other input
        dy = dout * self.x
        return dx, dy


class AddLayer:
    """out = x + y;  dx = dy = dout."""

    def __init__(self):
        pass

    def forward(self, x, y):
        return x + y

    def backward(self, dout):
        dx = dout * 1
        dy = dout * 1
        return dx, dy


class Relu:
    """out = max(0, x);  dx = dout where x > 0, else 0.

    ``mask`` is True where x <= 0, as in the book. Unlike the book,
    ``backward`` returns a new array and leaves the caller's ``dout``
    untouched (the book zeroes it in place).
    """

    def __init__(self):
        self.keep = None  # x > 0, the complement of the book's mask

    @property
    def mask(self):
        return None if self.keep is None else ~self.keep

    def forward(self, x):
        out, self.keep = ops_for(x).relu(x)  # one kernel for both on a GPU
        return out

    def backward(self, dout):
        return ops_for(dout).relu_backward(dout, self.keep)

    def forward_stack(self, x):
        """The forward pass without side effects, for stacks ``(K, N, ...)`` (see Affine)."""
        return x * (x > 0)


class Sigmoid:
    """out = 1 / (1 + exp(-x));  dx = dout * out * (1 - out).

    The forward pass is the overflow-free :func:`framework.functions.sigmoid`.
    """

    def __init__(self):
        self.out = None

    def forward(self, x):
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out

    def forward_stack(self, x):
        """The forward pass without side effects, for stacks ``(K, N, ...)`` (see Affine)."""
        return sigmoid(x)


class Affine:
    """out = x W + b;  dx = dout W^T,  dW = x^T dout,  db = sum_n dout.

    Differences from the book:

    * ``W`` and ``b`` are kept by reference, so in-place updates of the
      network's ``params`` (``params['W1'] -= lr * g``) reach the layer.
    * Input of shape ``(N, ...)`` is flattened to ``(N, -1)``; ``backward``
      returns ``dx`` in the input's original shape.
    * ``input_grad = False`` skips the ``dx`` product (``backward`` then
      returns ``None``). A network sets it on its first layer, whose input is
      data: the book computes that product and throws it away, a third of
      the step's arithmetic.
    * Wrong shapes raise ``ValueError`` naming the layer and the shapes.
    """

    def __init__(self, W, b, name="Affine"):
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"{name}: W must be 2-D (in, out) and b of shape (out,); "
                             f"got W {tuple(W.shape)} and b {tuple(b.shape)}")
        self.name = name
        self.W = W
        self.b = b
        self.input_grad = True
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        check_same_backend(self.name, x=x, W=self.W)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: expected a batch of shape (N, ...), got shape "
                             f"{tuple(x.shape)} (use x[None] for a single sample)")
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.W.shape[0]:
            raise ValueError(f"{self.name}: input has {x.shape[1]} features, W expects "
                             f"{self.W.shape[0]} (input shape {tuple(self.original_x_shape)}, "
                             f"W shape {tuple(self.W.shape)})")
        self.x = x
        return ops_for(x).matmul(x, self.W, bias=self.b)

    def forward_stack(self, x):
        """out = x W + b over the last axis of a stack ``(K, N, in)``, without side effects.

        Used to evaluate many perturbed copies of a network at once
        (:meth:`models.TwoLayerNet.numerical_gradient`); the stack is folded
        into one matrix product rather than K small ones.
        """
        out = x.reshape(-1, x.shape[-1]) @ self.W
        out += self.b
        return out.reshape(*x.shape[:-1], self.W.shape[1])

    def perturbed_outputs(self, x, param, index, delta):
        """Outputs ``(K, N, out)`` of K copies of this layer, copy k with element
        ``index[k]`` (flat) of ``param`` (``"W"`` or ``"b"``) moved by ``delta``.

        x (W + d e_ij) + b differs from x W + b only in column j, by d x[:, i];
        moving b[j] adds d to column j. So each copy costs N additions, not
        a matrix product, and the result equals the perturbed forward pass
        up to rounding.
        """
        xp = get_array_module(x)
        x = x.reshape(x.shape[0], -1)
        base = x @ self.W
        base += self.b
        k = index.shape[0]
        out = xp.broadcast_to(base, (k,) + base.shape).copy()
        # (k, out, N) view: copy k's column cols[k] is row (k, cols[k]) here, and
        # indexing two leading axes with arrays is the plainest form on every backend
        columns = out.transpose(0, 2, 1)
        if param == "W":
            rows, cols = xp.divmod(index, self.W.shape[1])
            columns[xp.arange(k), cols] += delta * x[:, rows].T
        elif param == "b":
            columns[xp.arange(k), index] += delta
        else:
            raise ValueError(f"{self.name}: no parameter {param!r}; expected 'W' or 'b'")
        return out

    def backward(self, dout):
        ops = ops_for(dout)
        self.dW = ops.matmul(self.x.T, dout)
        self.db = dout.sum(axis=0)
        if not self.input_grad:
            return None
        dx = ops.matmul(dout, self.W.T)
        return dx.reshape(self.original_x_shape)


class SoftmaxWithLoss:
    """loss = -sum_n log softmax(x_n)[t_n] / N;  dx = dout * (softmax(x) - t) / N.

    Differences from the book:

    * ``t`` may be one-hot ``(N, C)`` or integer labels ``(N,)``; the
      gradient is the same for both. Integer labels skip building a one-hot
      matrix in the training loop.
    * The loss is computed as log-softmax (x - max - log sum exp), exact
      where the book's log(y + 1e-7) is off by up to 1e-7 per sample, so
      ``backward`` is the exact gradient of ``forward``.
    * ``backward(dout)`` scales by ``dout``; the book ignores it.
    * The loss is returned as an array scalar on the input's backend, never
      converted to a Python float, so a GPU step does not wait for it.
    """

    def __init__(self):
        self.loss = None
        self.y = None  # softmax output
        self.t = None  # labels, as given
        self._rows = None  # arange(N), kept: on a GPU each new one is a kernel launch

    def _row_index(self, xp, n):
        rows = self._rows
        if rows is None or rows.shape[0] != n or get_array_module(rows) is not xp:
            rows = self._rows = xp.arange(n)
        return rows

    def forward(self, x, t):
        xp = get_array_module(x)
        check_same_backend("SoftmaxWithLoss", x=x, t=t)
        self._check(x, t)
        self.t = t
        n = x.shape[0]
        if t.ndim == 1:
            try:  # one kernel on a GPU (backends.cuda_ops)
                self.loss, self.y = ops_for(x).softmax_cross_entropy(
                    x, t, self._row_index(xp, n))
            except IndexError:
                raise ValueError(f"SoftmaxWithLoss: labels must lie in 0..{x.shape[1] - 1} "
                                 f"for {x.shape[1]} classes, got values {int(t.min())}.."
                                 f"{int(t.max())}") from None
            return self.loss
        shifted = x - x.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        e /= s
        self.y = e
        self.loss = (t * (xp.log(s) - shifted)).sum() / n
        return self.loss

    def backward(self, dout=1):
        xp = get_array_module(self.y)
        n = self.y.shape[0]
        if self.t.ndim == 1:
            return ops_for(self.y).softmax_cross_entropy_grad(
                self.y, self.t, dout / n, self._row_index(xp, n))
        dx = self.y - self.t
        dx *= dout / n
        return dx

    def forward_stack(self, x, t):
        """Losses ``(K,)`` of a stack of scores ``(K, N, C)`` against the same labels.

        Without side effects: the vectorised numerical gradient calls it.
        """
        xp = get_array_module(x)
        n = x.shape[-2]
        shifted = x - x.max(axis=-1, keepdims=True)
        log_s = xp.log(xp.exp(shifted).sum(axis=-1))
        if t.ndim == 1:  # the same one-hot sum as below: plain broadcasting on every backend
            t = xp.arange(x.shape[-1]) == t[:, None]
        return (t * (log_s[..., None] - shifted)).sum(axis=(-2, -1)) / n

    @staticmethod
    def _check(x, t):
        if x.ndim != 2:
            raise ValueError(f"SoftmaxWithLoss: expected scores of shape (N, classes), "
                             f"got {tuple(x.shape)}")
        n, c = x.shape
        if t.ndim == 1:
            if t.shape[0] != n:
                raise ValueError(f"SoftmaxWithLoss: x has {n} samples but t has "
                                 f"{t.shape[0]} labels")
            if t.dtype.kind not in "iu":
                raise ValueError(f"SoftmaxWithLoss: 1-D labels must be integer class "
                                 f"indices, got dtype {t.dtype}")
            # Labels past the last class make the indexing in forward raise on
            # NumPy; negative ones would silently wrap, so signed labels are
            # checked here. Reading device labels would stall every GPU step:
            # those are checked once where the data is sent (framework.data).
            if t.dtype.kind == "i" and not is_device_array(t) and n and t.min() < 0:
                raise ValueError(f"SoftmaxWithLoss: labels must lie in 0..{c - 1} for "
                                 f"{c} classes, got values {int(t.min())}..{int(t.max())}")
        elif t.shape != x.shape:
            raise ValueError(f"SoftmaxWithLoss: t has shape {tuple(t.shape)}; expected one-hot "
                             f"{tuple(x.shape)} or integer labels ({n},)")
