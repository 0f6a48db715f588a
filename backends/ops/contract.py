"""The operations' contract: what every backend's :class:`Ops` computes, in one place.

A layer stays one code path: it asks for the operations of its input's backend
(:func:`backends.ops_for`, resolved once per network call) and calls them by name.
:class:`Ops` says what each one computes; :class:`backends.ops.StandardOps` computes it
on the Array API standard alone, for any library, and is the reference every fast path
is tested against (``tests/backends/test_ops.py``). The fast families:

* :class:`backends.ops.StridedOps`: NumPy's API (strided views, ``out=``, writes in
  place), which NumPy and CuPy share;
* :class:`backends.host.ops.HostOps`: NumPy on every core, and compiled C kernels;
* :class:`backends.cuda.ops.CupyOps`: fused CUDA kernels and the CUDA graph's products.

Each says once, in its class docstring, when each of its fast paths applies; where one
does not, the reference's code runs. All may return fresh arrays, never a view of an
input unless a method says so; none writes into its inputs unless it says so ("in
place"). Shapes below use N for samples, C for channels or classes, H x W for images.
"""

import abc
import contextlib


class Ops(abc.ABC):
    """The routed operations (abstract). ``xp`` is the namespace the arrays are in."""

    name = "abstract"
    #: whether :meth:`softmax_cross_entropy` raises IndexError for every integer label
    #: outside ``0..C-1`` of host arrays; where not, the loss layer looks at the labels
    #: each call (array-api-strict's ``take_along_axis`` need not raise)
    raises_for_bad_labels = False

    def __init__(self, xp):
        self.xp = xp

    # --- how a network call runs -------------------------------------------------------

    def scope(self):
        """A context around one network call (a forward pass, a gradient, an evaluation),
        re-entrant (scopes nest) and reusable: a network gets it once and enters it for
        each call. Nothing by default; on the host, NumPy's BLAS threads are lent to
        xpnet's own passes inside it and given back on the way out."""
        return contextlib.nullcontext()

    def parts(self, n, nbytes=0, macs=0):
        """How many parts :meth:`each_part` cuts ``n`` samples into, for work moving
        ``nbytes`` or doing ``macs`` multiply-adds: one by default."""
        return 1

    def each_part(self, work, n, nbytes=0, macs=0):
        """Run ``work(lo, hi)`` over the samples ``[0, n)``; by default in one call, on the
        host over ranges split across the cores. ``work`` writes only its own samples."""
        work(0, n)

    # --- dense layers ----------------------------------------------------------------

    @abc.abstractmethod
    def matmul(self, a, b, bias=None, out=None):
        """``a @ b + bias`` for 2-D ``a (M, K)``, ``b (K, N)`` (any strides, ``x.T`` too) and
        ``bias (N,)`` or None: ``(M, N)`` in their dtype, written into ``out`` (and returned)
        when it is given."""

    @abc.abstractmethod
    def affine_grad(self, x, dout, W, input_grad=True):
        """The fully connected layer's gradients, ``(dx, dW, db)``: for ``x (N, D)``,
        ``dout (N, F)``, ``W (D, F)``, ``dW = x^T dout (D, F)``, ``db = sum_n dout (F,)``
        and ``dx = dout W^T (N, D)``, or None without ``input_grad``."""

    @abc.abstractmethod
    def relu(self, x, mask=True):
        """``(out, keep)``: ``out = max(x, 0)`` (+0 where x <= 0, -inf included; a NaN kept)
        of ``x``'s shape and memory order, and ``keep``, what :meth:`relu_backward` takes
        back: the booleans ``x > 0`` (the reference, NumPy, CuPy), or on PyTorch ``out``
        itself, positive exactly where ``x > 0`` (no pass to make a mask). ``mask=False``:
        ``(out, None)``, for a forward pass with no backward after it."""

    @abc.abstractmethod
    def relu_backward(self, dout, keep):
        """The gradient through ReLU, in ``dout``'s dtype: ``dout`` where x > 0, else 0
        (``dout * keep`` for a boolean ``keep``). Where x was NaN, 0 or ``dout`` (PyTorch's
        own backward passes it on): the loss is NaN by then, and the Trainer stops."""

    def relu_mask(self, keep):
        """The book's ``mask``, booleans True where x <= 0 (a NaN included), from what
        :meth:`relu` kept."""
        return ~keep

    @abc.abstractmethod
    def sigmoid(self, x):
        """``1 / (1 + exp(-x))`` of a floating ``x``, ``x``'s shape and dtype, without
        overflow for any finite x: exp is only taken of ``-|x|``, and the two branches are
        that function written for x >= 0 and for x < 0 (the book's overflows for x < -709
        in float64)."""

    @abc.abstractmethod
    def sigmoid_backward(self, dout, out):
        """The gradient through the sigmoid from its output ``out``:
        ``dout * (1 - out) * out``."""

    # --- softmax and its loss -------------------------------------------------------

    @abc.abstractmethod
    def softmax(self, x):
        """``exp(x) / sum exp(x)`` along the last axis, the row maximum subtracted first so
        nothing overflows: ``x``'s shape and dtype."""

    @abc.abstractmethod
    def log_softmax(self, x):
        """``x - log sum exp(x)`` along the last axis (the maximum subtracted first): exact
        where ``log(softmax(x))`` underflows."""

    @abc.abstractmethod
    def softmax_cross_entropy(self, x, t, rows):
        """``(loss, y, labels)`` for scores ``x (N, C)``: ``y = softmax(x)``, the mean
        cross-entropy ``loss = mean_n(log sum exp x_n - x_n[t_n])``, a 0-d array of x's
        dtype on its device, and ``labels``: ``t`` as :meth:`softmax_cross_entropy_grad`
        reads it (``t`` itself, or a form found while checking it: NumPy's API gives the
        flat positions ``n * C + t_n``), for the caller to hand on. ``t``: integer labels
        ``(N,)`` (``rows`` is ``arange(N)``, kept by the caller) or one-hot rows ``(N, C)``.
        A label outside ``0..C-1`` is an ``IndexError`` (or a NaN loss on a device, where
        raising would mean reading it)."""

    @abc.abstractmethod
    def softmax_cross_entropy_grad(self, y, labels, scale, rows):
        """``(y - onehot(t)) * scale``: the loss's gradient for the softmax ``y (N, C)``;
        ``labels`` is what :meth:`softmax_cross_entropy` returned for ``t`` (never ``t``
        itself unless it returned that), ``scale`` a Python number (``dout / N``)."""

    # --- batch normalization (features D of a batch (N, D)) -----------------------------
    #
    # The batch's means are the layer's to take, from the sums these return: over this
    # batch, or over every process's in a data-parallel run (SyncBatchNormalization
    # all-reduces the sums first). So the operations stop where a mean is needed: the
    # forward pass is sum, mean, batch_norm_center, mean, batch_norm_normalize.

    @abc.abstractmethod
    def batch_norm_center(self, x, mu):
        """``(xc, sq)`` for ``x (N, D)`` and the batch's mean ``mu (D,)``: ``xc = x - mu``
        and ``sq = sum_n xc^2 (D,)``, what the variance is the mean of."""

    @abc.abstractmethod
    def batch_norm_normalize(self, xc, var, gamma, beta, eps):
        """``(out, xn, std)`` for centred ``xc (N, D)`` and the variance ``var (D,)``:
        ``std = sqrt(var + eps) (D,)``, ``xn = xc / std`` and ``out = xn gamma + beta``;
        ``eps`` a Python number. In place: ``xn`` may be ``xc`` itself, divided (the
        caller's own temporary)."""

    @abc.abstractmethod
    def batch_norm_running(self, running_mean, running_var, mu, var, momentum):
        """The running averages moved towards the batch's ``mu`` and ``var``: ``r <-
        momentum r + (1 - momentum) s`` for each, ``momentum`` a Python number; returns
        ``(running_mean, running_var)``: the arrays given, changed in place (a CUDA graph
        records them), or new ones on JAX."""

    @abc.abstractmethod
    def batch_norm_grad_sums(self, dout, xn, gamma):
        """``(dbeta, dgamma, dxn, s, sxn)`` for ``dout (N, D)``: the parameters' gradients
        ``dbeta = sum_n dout`` and ``dgamma = sum_n xn dout``, ``dxn = dout gamma (N, D)``,
        and the two sums whose means the input's gradient takes, ``s = sum_n dxn`` and
        ``sxn = sum_n dxn xn``."""

    @abc.abstractmethod
    def batch_norm_grad(self, dxn, xn, std, mean_dxn, mean_dxn_xn):
        """The input's gradient ``dx = (dxn - mean_dxn - xn mean_dxn_xn) / std (N, D)``: the
        book's chain through the mean and variance (dxc, dstd, dvar, dmu), folded."""

    # --- weight decay (the book's L2 penalty, 6.4.1) --------------------------------------

    @abc.abstractmethod
    def weight_decay(self, weights, lam):
        """``0.5 lam sum_W sum(W^2)`` over the list ``weights`` (a network's weight
        matrices), ``lam`` a Python number: a 0-d array of their dtype."""

    @abc.abstractmethod
    def weight_decay_grads(self, grads, weights, lam):
        """``[g + lam W for g, W in zip(grads, weights)]``: the penalty's gradient added to
        each weight matrix's, as new arrays (the layers keep their own ``dW``)."""

    # --- optimizers (in place where arrays are written in place) ------------------------
    #
    # Each returns the arrays it updated: the very ones it was given, changed in place, on
    # every library that writes in place (a recorded CUDA graph holds them), and new ones on
    # JAX's immutable arrays. The caller keeps what is returned.

    @abc.abstractmethod
    def sgd_update(self, p, g, lr):
        """``p -= lr * g``; returns ``p``."""

    def sgd_update_all(self, params, grads, lr):
        """:meth:`sgd_update` for every parameter, the optimizer's one call per update:
        ``params[key] -= lr * grads[key]`` for each key of the mutable mapping ``params``,
        the key rebound where the update returned a new array (JAX). Returns None. A wing
        may run the loop without a call per parameter."""
        for key, p in params.items():
            new = self.sgd_update(p, grads[key], lr)
            if new is not p:
                params[key] = new

    @abc.abstractmethod
    def adam_step_size(self, t, lr, beta1, beta2):
        """Adam's step size from a step counter kept on the device: ``t += 1`` (a 0-d
        float64 array), then ``lr * sqrt(1 - beta2^t) / (1 - beta1^t)`` as a 0-d float64
        array (float32 on devices without float64); returns ``(t, lr_t)``. Computed where
        the parameters live, so a CUDA graph replays it with each step."""

    @abc.abstractmethod
    def adam_update(self, p, g, m, v, lr_t, beta1, beta2):
        """``m += (1 - beta1)(g - m); v += (1 - beta2)(g^2 - v); p -= lr_t m / (sqrt(v) +
        1e-7)``; ``lr_t`` the 0-d array of :meth:`adam_step_size`, taken in p's dtype
        first. Returns ``(p, m, v)``."""

    @abc.abstractmethod
    def momentum_update(self, p, g, v, lr, momentum):
        """Momentum's step: ``v *= momentum; v -= lr g; p += v`` (the velocity ``v`` of
        ``p``'s shape and dtype; ``lr`` and ``momentum`` numbers, or a compiled step's
        tracers). Returns ``(p, v)``."""

    @abc.abstractmethod
    def nesterov_update(self, p, g, v, lr, momentum):
        """Nesterov's step in the book's form, with ``v`` the velocity before it: ``p +=
        (momentum momentum) v; p -= ((1 + momentum) lr) g; v *= momentum; v -= lr g``, the
        numbers' products taken first. Returns ``(p, v)``."""

    @abc.abstractmethod
    def adagrad_update(self, p, g, h, lr):
        """AdaGrad's step: ``h += g g; p -= (lr g) / (sqrt(h) + 1e-7)``, ``h`` the sum of
        squared gradients. Returns ``(p, h)``."""

    @abc.abstractmethod
    def rmsprop_update(self, p, g, h, lr, decay_rate):
        """RMSprop's step: ``h *= decay_rate; h += ((1 - decay_rate) g) g; p -= (lr g) /
        (sqrt(h) + 1e-7)``, ``1 - decay_rate`` taken first. Returns ``(p, h)``."""

    # --- convolution and pooling ----------------------------------------------------------

    @abc.abstractmethod
    def im2col(self, x, fh, fw, stride, pad, out_h, out_w, out=None):
        """The windows of ``x (N, C, H, W)`` as columns, channel-major: ``(C fh fw, N out_h
        out_w)``, row ``(c, i, j)`` holding ``x[n, c, oy stride + i - pad, ox stride + j -
        pad]`` (0 outside the image) in column ``(n, oy, ox)``; into ``out`` when given."""

    @abc.abstractmethod
    def col2im(self, dcol, x_shape, fh, fw, stride, pad, out_h, out_w):
        """The adjoint of :meth:`im2col`: every column entry added back to the pixel it came
        from, an ``(N, C, H, W)`` view of ``(C, N, H, W)`` memory. No atomics: the same sums
        in the same order every time."""

    @abc.abstractmethod
    def conv(self, x, W, b, stride, pad, out_h, out_w):
        """``(out, saved)``: the cross-correlation ``W_col @ im2col(x) + b`` of ``x (N, C, H,
        W)`` with ``W (F, C, fh, fw)``, as an ``(N, F, out_h, out_w)`` view of ``(F, N, out_h,
        out_w)`` memory, and what :meth:`conv_grad` takes back (the columns; on the host's
        compiled path, the padded input)."""

    @abc.abstractmethod
    def conv_grad(self, dout, x, W, saved, stride, pad, input_grad=True):
        """``(dx, dW, db)`` of :meth:`conv` for ``dout (N, F, out_h, out_w)``; ``dx`` (x's
        shape) is None without ``input_grad`` (a first layer, whose input is data)."""

    @abc.abstractmethod
    def max_pool(self, x, ph, pw, stride, pad, out_h, out_w):
        """``(out, arg)`` for ``x (..., C, H, W)`` padded with -inf: each ``ph x pw``
        window's maximum and the index (row-major in the window; int8 up to 127 offsets)
        of its first maximum, both ``(..., C, out_h, out_w)`` in x's memory order."""

    @abc.abstractmethod
    def max_pool_grad(self, dout, arg, x, ph, pw, stride, pad):
        """``dx``, shaped and laid out as ``x``: each ``dout`` added to the pixel its ``arg``
        names (added up where windows overlap)."""

    # --- the Trainer's eager step ---------------------------------------------------------

    @abc.abstractmethod
    def take_batch(self, x, t, order, start, stop):
        """``(x[order[start:stop]], t[order[start:stop]])``: a batch of the data's rows, in
        the epoch's ``order`` (device indices), ``start`` and ``stop`` Python ints within
        it. The eager step gathers each batch with it."""

    @abc.abstractmethod
    def set_at(self, a, i, value):
        """``a[i] = value`` for a 1-D ``a``, a Python int ``i`` and a 0-d ``value``; returns
        ``a``, written in place where arrays are written in place, or a new array (JAX).
        The eager step records each loss with it."""

    # --- the vectorised numerical gradient ------------------------------------------------

    @abc.abstractmethod
    def perturbed_copies(self, base, index, moved, axis):
        """``(K,) + base.shape``: K copies of ``base``, copy k with ``moved[k]`` added to its
        slice ``index[k]`` along ``axis`` (a layer's output with one parameter element
        moved: one column of an Affine's, one channel of a convolution's). ``index``: K
        integers; ``moved``: a number, or ``(K,)`` + the slice's shape."""

    # --- dropout's generator ------------------------------------------------------------
    #
    # ``key`` and ``counter`` are device arrays holding a 64-bit value each, as
    # :func:`backends.splitmix.state` makes them: ``(1,)`` uint64, or ``(2,)`` uint32 words
    # (high, low) where the device has no 64-bit integers (JAX without jax_enable_x64).

    @abc.abstractmethod
    def uniform(self, key, counter, shape, first=0):
        """float64 numbers in [0, 1) of ``shape`` (float32 where the device has no float64),
        a pure function of ``key``, ``counter`` and each element's index from ``first`` on:
        SplitMix64 (:mod:`backends.splitmix`). The same numbers on every backend, nothing
        drawn on the host, and a CUDA graph that advances ``counter`` on the device draws
        new ones at each replay."""

    def keep(self, key, counter, shape, ratio, first=0):
        """Dropout's mask, ``uniform(key, counter, shape, first) > ratio`` for the Python
        float ``ratio``, as bools: decided on the float64 numbers even where the device
        has float32 only (a wing that rounds the numbers compares otherwise, exactly)."""
        return self.uniform(key, counter, shape, first) > ratio

    @abc.abstractmethod
    def increment(self, counter):
        """``counter += 1`` on the device (in place where arrays are written in place);
        returns the counter."""

    def __repr__(self):
        return f"<{self.name} ops on {getattr(self.xp, '__name__', self.xp)}>"
