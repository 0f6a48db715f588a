"""Batch Normalization (6.3; Ioffe and Szegedy, 2015)."""

import math
import warnings

from backends import backend_of, check_same_backend, get_array_module, ops_for
from backends.arrays import check_arrays
from backends.registry import REGISTRY
from framework import sharding
from framework.layers.base import Layer, training

EPS = 10e-7  # the book's epsilon, 1e-6


class BatchOfOneWarning(UserWarning):
    """Batch norm asked to normalise a training batch of one sample, its own mean."""


class BatchNormalization(Layer):
    """Normalise each feature over the batch, then scale and shift.

    Forward, in training: mu = mean_n x, var = mean_n (x - mu)^2,
    xn = (x - mu) / sqrt(var + eps), out = gamma xn + beta, and the running
    averages move: ``running_mean = momentum * running_mean + (1 - momentum) * mu``
    (the same for the variance). In inference (``train_flg=False``) the
    running averages take the place of mu and var.

    Backward (training): dbeta = sum_n dout, dgamma = sum_n xn dout, and
    dx = (dxn - mean_n dxn - xn mean_n(dxn xn)) / std with dxn = gamma dout
    (the book's chain of steps, folded).

    Input ``(N, D)``, or ``(N, C, H, W)`` treated as the book does: every
    axis but the batch axis is one feature axis (``D = C * H * W``), and the
    output takes the input's shape.

    Differences from the book:

    * The running variance starts at 1, not 0: a network evaluated before
      its first training step then passes activations through unchanged
      instead of multiplying them by 1/sqrt(eps) = 1000.
    * The running averages are created with the layer, on gamma's backend,
      and updated in place: they are network state (``buffers``), saved in
      checkpoints and recorded into a CUDA-graph step.
    * Wrong feature counts raise ``ValueError`` naming the layer. A training batch of
      one sample is computed as the book computes it, with a :class:`BatchOfOneWarning`:
      it is its own mean, so the output is beta whatever x is, no gradient reaches x
      and the running variance is pulled towards 0, where the book's layer says
      nothing (PyTorch's ``BatchNorm1d`` refuses it; the book's own
      ``ch06/batch_norm_gradient_check.py`` checks the gradients of such a batch, so
      xpnet computes it). The Trainer refuses a run whose batches would hold one. (In a
      data-parallel step the whole batch counts.)
    """

    takes_train_flg = True
    buffers = ("running_mean", "running_var")
    saved = ("batch_size", "xn", "std", "dgamma", "dbeta")

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None,
                 name="BatchNormalization"):
        check_arrays(name, gamma=gamma, beta=beta)
        check_same_backend(name, gamma=gamma, beta=beta)
        if gamma.ndim != 1 or beta.shape != gamma.shape:
            raise ValueError(f"{name}: gamma and beta must be 1-D and of one shape, got "
                             f"{tuple(gamma.shape)} and {tuple(beta.shape)}")
        try:
            rate = float(momentum)
        except (TypeError, ValueError):
            rate = float("nan")
        if isinstance(momentum, (bool, str, bytes)) or not 0 <= rate <= 1:
            raise ValueError(f"{name}: momentum must lie in [0, 1], got {momentum!r}")
        xp = get_array_module(gamma)
        super().__init__(name)
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        backend = backend_of(gamma)
        self.running_mean = (xp.zeros_like(gamma) if running_mean is None
                             else backend.asarray(running_mean, dtype=gamma.dtype))
        self.running_var = (xp.ones_like(gamma) if running_var is None
                            else backend.asarray(running_var, dtype=gamma.dtype))
        self.input_shape = None
        self.batch_size = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def _batch_mean(self, sums, n, count=False):
        """The mean over the batch axis from ``sums``, this batch's sums over its ``n`` rows:
        over this batch here, over every process's batch in
        :class:`framework.layers.SyncBatchNormalization` (``count``: the forward's first
        mean, which also counts the samples). The sum, then the division by the count, as
        the synchronised layer divides its all-reduced sum: the same bits in a world of one
        on every library (a library's ``mean`` may multiply by ``1/N``, as JAX 0.6's did)."""
        return sums / n

    def _flat(self, x, stacked=False):
        """``x`` as ``(N, D)`` (or ``(K, N, D)`` for a stack), checked against gamma."""
        lead = 2 if stacked else 1
        if x.ndim < lead + 1:
            raise ValueError(f"{self.name}: expected a batch of shape (N, features) or "
                             f"(N, C, H, W), got shape {tuple(x.shape[lead - 1:])}")
        width = math.prod(x.shape[lead:])  # not -1: a batch of no rows (an empty shard) too
        flat = get_array_module(x).reshape(x, tuple(x.shape[:lead]) + (width,))
        if flat.shape[-1] != self.gamma.shape[0]:
            raise ValueError(f"{self.name}: input has {flat.shape[-1]} features (shape "
                             f"{tuple(x.shape[lead - 1:])}), gamma has {self.gamma.shape[0]}")
        return flat

    def _check_batch(self, shape):
        """``ValueError`` for an empty training batch, a :class:`BatchOfOneWarning` for one
        of one sample, outside a data-parallel step (whose shards may hold any number:
        the whole batch counts)."""
        if shape[0] >= 2 or sharding.current() is not None:
            return
        if shape[0] == 0:  # was NumPy's "invalid value" warnings, then NaN
            raise ValueError(f"{self.name}: an empty training batch (shape {tuple(shape)}) "
                             f"has no mean to normalise by; expected at least 2 samples")
        warnings.warn(
            f"{self.name}: a training batch of one sample (shape {tuple(shape)}) is its own "
            f"mean: the output is beta whatever the input, no gradient reaches it, and the "
            f"running variance is pulled towards 0; train on at least 2 samples "
            f"(train_flg=False normalises one by the running averages)", BatchOfOneWarning,
            stacklevel=3)

    def _check(self, x):
        """What forward checks of a training batch (its features, its size), for a
        network's ``numerical_gradient``, which walks the layers' stack forms instead."""
        self._flat(x)
        self._check_batch(x.shape)

    def _bind(self, x, kind):
        """For a new kind of input: its library against gamma's and its features checked,
        the operations for it kept (the batch's size is looked at in each training pass)."""
        self._check_arrays("forward", x=x)
        check_same_backend(self.name, x=x, gamma=self.gamma)
        self._flat(x)
        self._ops, self._xtype, self._kind = ops_for(x), type(x), kind

    def forward(self, x, train_flg=True):
        if train_flg is not True and train_flg is not False:  # no call, no text for a bool
            train_flg = training(f"{self.name}.forward", train_flg)
        try:
            kind = (type(x), x.shape[1:], x.dtype, getattr(x, "device", None),
                    type(self.gamma), REGISTRY.generation)
        except AttributeError:
            self._check_arrays("forward", x=x)
            raise
        if kind != self._kind:  # a new kind of input: checked, its operations found
            self._bind(x, kind)
        ops = self._ops
        # kept for backward; this pass reshapes by its own copy, which another thread's
        # pass through this network (a served model's) cannot change under it
        self.input_shape = shape = x.shape
        if x.ndim != 2:  # gamma's width, not -1: a batch of no rows (an empty shard) too
            x = get_array_module(x).reshape(x, (shape[0], self.gamma.shape[0]))
        if train_flg:
            n = shape[0]
            if n < 2:
                self._check_batch(shape)
            mu = self._batch_mean(get_array_module(x).sum(x, axis=0), n, count=True)
            xc, sq = ops.batch_norm_center(x, mu)
            var = self._batch_mean(sq, n)
            out, self.xn, self.std = ops.batch_norm_normalize(xc, var, self.gamma, self.beta,
                                                              EPS)
            self.batch_size = n
            self.running_mean, self.running_var = ops.batch_norm_running(
                self.running_mean, self.running_var, mu, var, self.momentum)
        else:
            out = ops.batch_norm_normalize(x - self.running_mean, self.running_var,
                                           self.gamma, self.beta, EPS)[0]
        return get_array_module(out).reshape(out, shape)

    def backward(self, dout):
        xp = get_array_module(dout)
        try:
            ops = self._ops if type(dout) is self._xtype else self._dout_ops(dout)
            dout = xp.reshape(dout, (dout.shape[0], self.gamma.shape[0]))
        except AttributeError:
            self._check_arrays("backward", dout=dout)
            raise
        try:
            self.dbeta, self.dgamma, dxn, s, sxn = ops.batch_norm_grad_sums(dout, self.xn,
                                                                            self.gamma)
        except Exception:  # what kind the library raises for None
            self._check_kept()
            raise
        mean_dxn, mean_dxn_xn = self._gradient_means(s, sxn, dout.shape[0])
        dx = ops.batch_norm_grad(dxn, self.xn, self.std, mean_dxn, mean_dxn_xn)
        return xp.reshape(dx, self.input_shape)

    def _gradient_means(self, s, sxn, n):
        """``(mean_n dxn, mean_n(dxn xn))``, the means backward subtracts, from their sums
        over this batch's ``n`` rows."""
        return self._batch_mean(s, n), self._batch_mean(sxn, n)

    def _normalised_stack(self, x, train_flg):
        flat = self._flat(x, stacked=True)
        xp = get_array_module(flat)
        if train_flg:
            mu = xp.mean(flat, axis=1, keepdims=True)
            xc = flat - mu
            return xc / xp.sqrt(xp.mean(xc * xc, axis=1, keepdims=True) + EPS)
        return (flat - self.running_mean) / xp.sqrt(self.running_var + EPS)

    def forward_stack(self, x, train_flg=True):
        """The forward pass for each of a stack ``(K, N, ...)``, each with its own batch
        statistics in training; the running averages are left alone."""
        out = self.gamma * self._normalised_stack(x, train_flg) + self.beta
        return get_array_module(out).reshape(out, x.shape)

    def perturbed_outputs(self, x, param, index, delta, train_flg=True):
        """Outputs ``(K, N, ...)`` of K copies, copy k with element ``index[k]`` of
        ``gamma`` or ``beta`` moved by ``delta``: column j gains delta * xn[:, j]
        or delta. The normalisation does not depend on gamma and beta."""
        xp = get_array_module(x)
        xn = self._normalised_stack(x[None, ...], train_flg)[0, ...]  # (N, D)
        base = self.gamma * xn + self.beta
        k = index.shape[0]
        if param == "gamma":
            moved = delta * xp.permute_dims(xp.take(xn, index, axis=1), (1, 0))  # (K, N)
        elif param == "beta":
            moved = delta
        else:
            raise ValueError(f"{self.name}: no parameter {param!r}; expected 'gamma' or 'beta'")
        out = ops_for(x).perturbed_copies(base, index, moved, axis=1)
        return xp.reshape(out, (k,) + tuple(x.shape))
