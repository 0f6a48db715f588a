"""Softmax with the cross-entropy loss, the last layer of every classifier here."""

from backends import (check_same_backend, dtype_kind, get_array_module, is_device_array,
                      on_device_of, ops_for)
from framework.layers.base import Layer


class SoftmaxWithLoss(Layer):
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

    def __init__(self, name=None):
        super().__init__(name)
        self.loss = None
        self.y = None  # softmax output
        self.t = None  # labels, as given
        self._rows = None  # arange(N), kept: on a GPU each new one is a kernel launch

    def _row_index(self, xp, n, like):
        rows = self._rows
        if rows is None or rows.shape[0] != n or get_array_module(rows) is not xp \
                or rows.device != like.device:
            rows = self._rows = xp.arange(n, **on_device_of(xp, like))
        return rows

    def forward(self, x, t):
        xp = get_array_module(x)
        check_same_backend("SoftmaxWithLoss", x=x, t=t)
        self._check(x, t)
        self.t = t
        n = x.shape[0]
        if t.ndim == 1:
            try:  # one kernel on a GPU (backends.cuda.ops)
                self.loss, self.y = ops_for(x).softmax_cross_entropy(
                    x, t, self._row_index(xp, n, x))
            except (IndexError, RuntimeError):  # NumPy and the standard's; PyTorch's
                raise ValueError(f"SoftmaxWithLoss: labels must lie in 0..{x.shape[1] - 1} "
                                 f"for {x.shape[1]} classes, got values {int(xp.min(t))}.."
                                 f"{int(xp.max(t))}") from None
            return self.loss
        shifted = x - xp.max(x, axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=1, keepdims=True)
        e /= s
        self.y = e
        self.loss = xp.sum(t * (xp.log(s) - shifted)) / n
        return self.loss

    def backward(self, dout=1):
        xp = get_array_module(self.y)
        n = self.y.shape[0]
        if self.t.ndim == 1:
            return ops_for(self.y).softmax_cross_entropy_grad(
                self.y, self.t, dout / n, self._row_index(xp, n, self.y))
        dx = self.y - self.t
        dx *= dout / n
        return dx

    def forward_stack(self, x, t):
        """Losses ``(K,)`` of a stack of scores ``(K, N, C)`` against the same labels.

        Without side effects: the vectorised numerical gradient calls it.
        """
        xp = get_array_module(x)
        n = x.shape[-2]
        shifted = x - xp.max(x, axis=-1, keepdims=True)
        log_s = xp.log(xp.sum(xp.exp(shifted), axis=-1))
        if t.ndim == 1:  # the same one-hot sum as below: plain broadcasting on every backend
            t = xp.astype(xp.arange(x.shape[-1], **on_device_of(xp, x))[None, :] == t[:, None],
                          x.dtype)
        return xp.sum(t * (log_s[..., None] - shifted), axis=(-2, -1)) / n

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
            if dtype_kind(t.dtype) not in "iu":
                raise ValueError(f"SoftmaxWithLoss: 1-D labels must be integer class "
                                 f"indices, got dtype {t.dtype}")
            # Labels past the last class make the indexing in forward raise on
            # NumPy; negative ones would silently wrap, so signed labels are
            # checked here. Reading device labels would stall every GPU step:
            # those are checked once where the data is sent (framework.data).
            if not is_device_array(t) and n and get_array_module(t).__name__ != "numpy":
                # NumPy's indexing raises for a label past the last class; PyTorch's
                # gather on the CPU need not: host labels are cheap to look at
                xp = get_array_module(t)
                low, high = int(xp.min(t)), int(xp.max(t))
                if low < 0 or high >= c:
                    raise ValueError(f"SoftmaxWithLoss: labels must lie in 0..{c - 1} for "
                                     f"{c} classes, got values {low}..{high}")
            elif dtype_kind(t.dtype) == "i" and not is_device_array(t) and n:
                low = int(t.min())
                if low < 0:
                    raise ValueError(f"SoftmaxWithLoss: labels must lie in 0..{c - 1} for "
                                     f"{c} classes, got values {low}..{int(t.max())}")
        elif t.shape != x.shape:
            raise ValueError(f"SoftmaxWithLoss: t has shape {tuple(t.shape)}; expected one-hot "
                             f"{tuple(x.shape)} or integer labels ({n},)")
