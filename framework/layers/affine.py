"""The fully connected layer: out = x W + b."""

from backends import check_same_backend, get_array_module, ops_for
from backends.arrays import check_arrays
from backends.registry import REGISTRY
from framework.layers.base import Layer, bias_of


class Affine(Layer):
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
    * Wrong shapes raise ``ValueError`` naming the layer and the shapes, checked once
      for each kind of input (its library, device, dtype and shape past the batch
      axis), not at every step.
    """

    saved = ("x", "dW", "db")

    def __init__(self, W, b, name="Affine"):
        # a number (the book's Convolution(w, 0)): that bias for each output
        b = bias_of(W, b, W.shape[1] if getattr(W, "ndim", 0) == 2 else 0)
        check_arrays(name, W=W, b=b)  # a list of rows: named, not "no attribute 'ndim'"
        check_same_backend(name, W=W, b=b)
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"{name}: W must be 2-D (in, out) and b of shape (out,); "
                             f"got W {tuple(W.shape)} and b {tuple(b.shape)}")
        super().__init__(name)
        self.W = W
        self.b = b
        self.input_grad = True
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def _check(self, x):
        check_same_backend(self.name, x=x, W=self.W)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: expected a batch of shape (N, ...), got shape "
                             f"{tuple(x.shape)} (use x[None] for a single sample)")
        features = 1
        for n in x.shape[1:]:
            features *= n
        if features != self.W.shape[0]:
            raise ValueError(f"{self.name}: input has {features} features, W expects "
                             f"{self.W.shape[0]} (input shape {tuple(x.shape)}, "
                             f"W shape {tuple(self.W.shape)})")

    def forward(self, x):
        W = self.W
        try:
            kind = (type(x), x.shape[1:], x.dtype, getattr(x, "device", None), type(W),
                    REGISTRY.generation)
        except AttributeError:
            self._check_arrays("forward", x=x)
            raise
        if kind != self._kind:  # a new kind of input: checked, its operations found
            self._bind(x, kind)
        self.original_x_shape = x.shape
        if x.ndim != 2:
            # W's rows, not -1: a batch of no rows (an empty shard) reshapes too
            x = get_array_module(x).reshape(x, (x.shape[0], W.shape[0]))
        self.x = x
        return self._ops.matmul(x, W, self.b)

    def forward_stack(self, x, train_flg=True):
        """out = x W + b for each of a stack ``(K, N, ...)`` of inputs, without side effects.

        Used to evaluate many perturbed copies of a network at once
        (:meth:`models.base.Network.numerical_gradient`); the stack is folded
        into one matrix product rather than K small ones.
        """
        xp = get_array_module(x)
        k, n = x.shape[:2]
        out = xp.reshape(x, (k * n, self.W.shape[0])) @ self.W  # W's rows: N may be 0
        out += self.b
        return xp.reshape(out, (k, n, self.W.shape[1]))

    def perturbed_outputs(self, x, param, index, delta, train_flg=True):
        """Outputs ``(K, N, out)`` of K copies of this layer, copy k with element
        ``index[k]`` (flat) of ``param`` (``"W"`` or ``"b"``) moved by ``delta``.

        x (W + d e_ij) + b differs from x W + b only in column j, by d x[:, i];
        moving b[j] adds d to column j. So each copy costs N additions, not
        a matrix product, and the result equals the perturbed forward pass
        up to rounding (the operations' ``perturbed_copies``).
        """
        xp = get_array_module(x)
        x = xp.reshape(x, (x.shape[0], self.W.shape[0]))
        base = x @ self.W
        base += self.b
        width = self.W.shape[1]
        if param == "W":
            rows, cols = index // width, index % width
            moved = delta * xp.permute_dims(xp.take(x, rows, axis=1), (1, 0))  # (K, N)
        elif param == "b":
            cols, moved = index, delta
        else:
            raise ValueError(f"{self.name}: no parameter {param!r}; expected 'W' or 'b'")
        return ops_for(x).perturbed_copies(base, cols, moved, axis=1)

    def backward(self, dout):
        ops = self._ops if type(dout) is self._xtype else self._dout_ops(dout)
        try:
            dx, self.dW, self.db = ops.affine_grad(self.x, dout, self.W, self.input_grad)
        except Exception:  # what kind the library raises for None
            self._check_kept(dout=dout)
            raise
        if dx is None or dx.shape == self.original_x_shape:
            return dx
        return get_array_module(dx).reshape(dx, self.original_x_shape)
