"""Softmax with the cross-entropy loss, the last layer of every classifier here."""

from backends import (check_same_backend, dtype_kind, get_array_module, is_device_array,
                      on_device_of, ops_for)
from backends.registry import REGISTRY
from framework import sharding
from framework.data import label_column
from framework.layers.base import Layer


class SoftmaxWithLoss(Layer):
    """loss = -sum_n log softmax(x_n)[t_n] / N;  dx = dout * (softmax(x) - t) / N.

    Differences from the book:

    * ``t`` may be one-hot ``(N, C)`` or integer labels ``(N,)``; the
      gradient is the same for both. One-hot rows of another dtype than the scores'
      (``np.eye(10)[t]`` is float64) are taken in the scores' dtype, so the loss and
      the gradient stay in the network's. Integer labels skip building a one-hot
      matrix in the training loop.
    * The loss is computed as log-softmax (x - max - log sum exp), exact
      where the book's log(y + 1e-7) is off by up to 1e-7 per sample, so
      ``backward`` is the exact gradient of ``forward``.
    * ``backward(dout)`` scales by ``dout``; the book ignores it.
    * The loss is returned as an array scalar on the input's backend, never
      converted to a Python float, so a GPU step does not wait for it.
    * The shapes and the labels' dtype are checked once for each kind of input, not at
      every step; a label outside the classes is an error naming the range (where
      reading it would not stall a GPU).
    """

    saved = ("loss", "y", "t", "_labels")

    def __init__(self, name=None):
        super().__init__(name)
        self.loss = None
        self.y = None  # softmax output
        self.t = None  # labels, as given
        self._labels = None  # the labels as the operations' gradient reads them
        self._rows = None  # arange(N), kept: on a GPU each new one is a kernel launch
        self._look = False  # whether the labels' range is looked at each call (see _check)
        self._empty = False  # a batch of no samples (see _empty_shard)
        self._cast = False  # one-hot labels of another dtype than the scores' (see _check)
        self._column = False  # labels given as a column (N, 1) (see framework.data)

    def forward(self, x, t):
        try:
            kind = (type(x), x.shape, x.dtype, getattr(x, "device", None), type(t), t.shape,
                    t.dtype, REGISTRY.generation)
        except AttributeError:
            self._check_arrays("forward", x=x, t=t)
            raise
        if kind != self._kind:  # a new kind of input: checked, its operations found
            self._column = label_column(t, x.shape[-1])
            if self._column:
                t = get_array_module(t).reshape(t, (-1,))
            self._check(x, t)
            self._ops, self._xtype, self._kind = ops_for(x), type(x), kind
        elif self._column:  # a column of labels (N, 1): the labels
            t = get_array_module(t).reshape(t, (-1,))
        self.t = t
        if self._empty:  # no samples: only a data-parallel step's empty shard has a loss
            return self._empty_shard(x)
        ops = self._ops
        if self._look:
            self._check_range(t, x.shape[1])
        if self._cast:  # one-hot rows of another dtype (np.eye(10)[t] is float64)
            t = get_array_module(t).astype(t, x.dtype)
        try:  # one kernel on a GPU (backends.cuda.ops)
            self.loss, self.y, self._labels = ops.softmax_cross_entropy(x, t, self._rows)
        except (IndexError, RuntimeError) as e:  # NumPy and the standard's; PyTorch's
            failed = e
        else:
            return self.loss
        self._check_range(t, x.shape[1])  # names the labels' range, outside the except
        raise failed

    def _empty_shard(self, x):
        """The loss of a process whose shard of a short last batch holds no sample (two
        processes, one sample): 0, as it weighs 0 in the batch's mean, and the process
        takes its part in the collectives all the same (a synchronised batch norm's, the
        gradients' sum). Anywhere else an empty batch has no mean: ``ValueError``."""
        if sharding.current() is None:
            raise ValueError("SoftmaxWithLoss: an empty batch (0 samples) has no mean loss; "
                             "expected at least one sample")
        xp = get_array_module(x)
        self.y, self.loss = x, xp.zeros((), dtype=x.dtype, **on_device_of(xp, x))
        return self.loss

    def backward(self, dout=1):
        y = self.y
        if self._empty:  # no sample, no gradient
            return get_array_module(y).zeros_like(y)
        try:
            ops = self._ops if type(y) is self._xtype else ops_for(y)
            return ops.softmax_cross_entropy_grad(y, self._labels, dout / y.shape[0], self._rows)
        except Exception:  # what kind the library raises for None
            self._check_kept()
            raise

    def forward_stack(self, x, t):
        """Losses ``(K,)`` of a stack of scores ``(K, N, C)`` against the same labels.

        Without side effects: the vectorised numerical gradient calls it.
        """
        xp = get_array_module(x)
        n = x.shape[-2]
        if label_column(t, x.shape[-1]):  # a column of labels (N, 1): the labels
            t = get_array_module(t).reshape(t, (-1,))
        if t.ndim == 1:  # one-hot rows: plain broadcasting on every backend
            t = xp.astype(xp.arange(x.shape[-1], **on_device_of(xp, x))[None, :] == t[:, None],
                          x.dtype)
        elif t.dtype != x.dtype:  # one-hot rows of another dtype: the scores' (see forward)
            t = xp.astype(t, x.dtype)
        return -xp.sum(t * ops_for(x).log_softmax(x), axis=(-2, -1)) / n

    @staticmethod
    def _check_range(t, classes):
        """``ValueError`` if a label lies outside ``0..classes - 1`` (reads the labels)."""
        if not t.shape[0]:
            return
        xp = get_array_module(t)
        low, high = int(xp.min(t)), int(xp.max(t))
        if low < 0 or high >= classes:
            raise ValueError(f"SoftmaxWithLoss: labels must lie in 0..{classes - 1} for "
                             f"{classes} classes, got values {low}..{high}")

    def check_inputs(self, x, t):
        """``ValueError`` (``TypeError`` for arrays of two libraries) naming what is wrong
        with scores ``x`` and labels ``t``: the checks :meth:`forward` makes of a new kind
        of input, and the labels' range, read here. For a loss computed another way
        (:meth:`forward_stack`, under a network's ``numerical_gradient``), which would
        take any labels: one past the classes would be a row of zeros, a 0-d label
        broadcast against every score. Keeps nothing."""
        if label_column(t, x.shape[-1]):  # a column of labels (N, 1): the labels
            t = get_array_module(t).reshape(t, (-1,))
        self._check_shapes(x, t)
        if x.shape[0] == 0 and sharding.current() is None:
            raise ValueError("SoftmaxWithLoss: an empty batch (0 samples) has no mean loss; "
                             "expected at least one sample")
        if t.ndim == 1:
            self._check_range(t, x.shape[1])

    @staticmethod
    def _check_shapes(x, t):
        check_same_backend("SoftmaxWithLoss", x=x, t=t)
        if x.ndim != 2:
            raise ValueError(f"SoftmaxWithLoss: expected scores of shape (N, classes), "
                             f"got {tuple(x.shape)}")
        n = x.shape[0]
        if t.ndim == 1:
            if t.shape[0] != n:
                raise ValueError(f"SoftmaxWithLoss: x has {n} samples but t has "
                                 f"{t.shape[0]} labels")
            if dtype_kind(t.dtype) not in "iu":
                raise ValueError(f"SoftmaxWithLoss: 1-D labels must be integer class "
                                 f"indices, got dtype {t.dtype}")
        elif t.shape != x.shape:
            raise ValueError(f"SoftmaxWithLoss: t has shape {tuple(t.shape)}; expected one-hot "
                             f"{tuple(x.shape)} or integer labels ({n},)")

    def _check(self, x, t):
        """The checks of a new kind of input; keeps what the calls of that kind use."""
        self._check_shapes(x, t)
        n = x.shape[0]
        self._empty = n == 0
        if t.ndim == 1:
            # The operations raise for a label outside the classes on the host where they
            # say so (NumPy's, PyTorch's wing: ``raises_for_bad_labels``) and give a NaN
            # loss on a device and on JAX (reading the labels would stall every step: the
            # Trainer checks its data once, where it is sent). The standard's gather on
            # the host need not raise, and such labels are cheap to look at: those are
            # looked at each call.
            xp = get_array_module(t)
            self._look = not is_device_array(t) and not ops_for(x).raises_for_bad_labels
            self._rows = xp.arange(n, **on_device_of(xp, t))
            self._cast = False
        else:
            # one-hot rows in the scores' dtype, whatever theirs: the loss and its gradient
            # stay in the network's dtype (NumPy promoted a float32 network's backward to
            # float64; PyTorch and the standard's libraries refused to mix the two)
            self._look, self._rows, self._cast = False, None, t.dtype != x.dtype
