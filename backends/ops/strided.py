"""The operations in NumPy's own API, which NumPy and CuPy share: the wings' family.

Where the standard (:mod:`backends.ops.reference`) builds im2col from one strided slice
per filter offset and col2im from slice additions into new arrays, NumPy's API has more:
a strided view of the padded image copied into the columns in one pass (``as_strided``),
writes into preallocated outputs (``out=``), in-place additions into views, fancy
indexing, and the running maximum of max pooling kept in place.
:class:`backends.host.ops.HostOps` and :class:`backends.cuda.ops.CupyOps` build on
:class:`StridedOps`, and are tested against :class:`backends.ops.StandardOps`.
"""

from backends import splitmix
from backends.ops.reference import StandardOps, window_slices


class StridedOps(StandardOps):
    """NumPy's API versions of the operations, for NumPy and CuPy alike.

    When each applies (elsewhere the reference's code runs):

    * ``softmax_cross_entropy`` and its gradient: integer labels (one-hot rows take the
      reference's way);
    * everything else it defines: always.

    ``_sum`` and ``_max`` are the library's reductions (NumPy's ``add.reduce`` and
    ``maximum.reduce`` on the host: the same results as ``x.sum()``, without the Python
    wrappers around them); ``_ravel_multi_index`` NumPy's without its
    ``__array_function__`` dispatch.

    Integer labels are read on the host through their flat positions ``n * C + t_n``,
    found once and checked (``ravel_multi_index`` refuses a negative label, which
    NumPy's indexing would wrap silently, as it refuses one past the last class) and
    handed to the gradient (:class:`FlatLabels`): one index into the flattened scores
    where ``[rows, t]`` is two. On a device they are never read: a label outside its row
    gives a NaN loss.
    """

    name = "strided"
    #: whether the arrays live on an accelerator (CuPy's): then labels are never read
    device_arrays = False
    raises_for_bad_labels = True  # on the host: each label's position is checked

    def __init__(self, xp, backend=None):
        super().__init__(xp, backend)
        self._sum, self._max = xp.sum, xp.max
        ravel = getattr(xp, "ravel_multi_index", None)
        self._ravel_multi_index = getattr(ravel, "_implementation", ravel)

    def matmul(self, a, b, bias=None, out=None):
        out = self.xp.matmul(a, b, out=out)
        if bias is not None:
            out += bias  # in place: one temporary fewer per step
        return out

    def relu(self, x, mask=True):
        # maximum, not x * keep: -inf * 0 is NaN, and where() is slower in NumPy
        return self.xp.maximum(x, x.dtype.type(0)), (x > 0 if mask else None)

    def relu_backward(self, dout, keep):
        return dout * keep

    def affine_grad(self, x, dout, W, input_grad=True):
        dW = self.matmul(x.T, dout)
        db = self._sum(dout, axis=0)
        return (self.matmul(dout, W.T) if input_grad else None), dW, db

    def im2col(self, x, fh, fw, stride, pad, out_h, out_w, out=None):
        # Channel-major: each row is one filter offset across all windows, so the
        # copy moves whole image rows and W_col @ col comes out channel-first.
        xp = self.xp
        n, c = x.shape[:2]
        if out is None:
            out = xp.empty((c * fh * fw, n * out_h * out_w), dtype=x.dtype)
        dest = out.reshape(c, fh, fw, n, out_h, out_w)
        planes = x.transpose(1, 0, 2, 3)  # (C, N, H, W): free for channel-major input

        def work(lo, hi):
            img = planes[:, lo:hi]
            if pad:
                img = xp.pad(img, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            s0, s1, s2, s3 = img.strides
            dest[:, :, :, lo:hi] = xp.lib.stride_tricks.as_strided(
                img, (c, fh, fw, hi - lo, out_h, out_w), (s0, s2, s3, s1, s2 * stride, s3 * stride))

        self.each_part(work, n, out.nbytes)
        return out

    def col2im(self, dcol, x_shape, fh, fw, stride, pad, out_h, out_w):
        xp = self.xp
        n, c, h, w = x_shape
        img = xp.empty((c, n, h + 2 * pad, w + 2 * pad), dtype=dcol.dtype)
        d = dcol.reshape(c, fh, fw, n, out_h, out_w)
        rows, cols = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1

        def work(lo, hi):
            part, dp = img[:, lo:hi], d[:, :, :, lo:hi]
            if stride >= fh and stride >= fw:  # windows do not overlap: one strided write
                part[...] = 0
                s0, s1, s2, s3 = part.strides
                xp.lib.stride_tricks.as_strided(
                    part, dp.shape, (s0, s2, s3, s1, s2 * stride, s3 * stride))[...] = dp
                return
            if stride == 1:  # the first offset is written, not added: one pass fewer
                part[:, :, :out_h, :out_w] = dp[:, 0, 0]
                part[:, :, out_h:] = 0
                part[:, :, :out_h, out_w:] = 0
            else:
                part[...] = 0
                part[:, :, :rows:stride, :cols:stride] += dp[:, 0, 0]
            for i in range(fh):
                for j in range(fw):
                    if i or j:
                        part[:, :, i:i + rows:stride, j:j + cols:stride] += dp[:, i, j]

        self.each_part(work, n, img.nbytes)
        return img[:, :, pad:pad + h, pad:pad + w].transpose(1, 0, 2, 3)

    def conv(self, x, W, b, stride, pad, out_h, out_w):
        fn, _, fh, fw = W.shape
        col = self.im2col(x, fh, fw, stride, pad, out_h, out_w)
        out = self.matmul(W.reshape(fn, -1), col)  # (FN, N * out_h * out_w): channel-major
        out += b[:, None]
        return out.reshape(fn, x.shape[0], out_h, out_w).transpose(1, 0, 2, 3), col

    def conv_grad(self, dout, x, W, col, stride, pad, input_grad=True):
        fn, _, fh, fw = W.shape
        out_h, out_w = dout.shape[2:]
        d = dout.transpose(1, 0, 2, 3).reshape(fn, -1)  # free for conv's own layout
        db = d.sum(axis=1)
        # (col dout^T)^T rather than dout col^T: the same dW, and with the long
        # columns as the product's rows NumPy's BLAS runs it faster (docs/performance.md)
        dW = self.matmul(col, d.T).T.reshape(W.shape)
        if not input_grad:
            return None, dW, db
        dcol = self.matmul(W.reshape(fn, -1).T, d)
        return self.col2im(dcol, x.shape, fh, fw, stride, pad, out_h, out_w), dW, db

    def max_pool(self, x, ph, pw, stride, pad, out_h, out_w):
        xp = self.xp
        offsets = window_slices(ph, pw, stride, out_h, out_w)
        shape = x.shape[:-2] + (out_h, out_w)
        order = memory_order(x)  # out and arg keep x's memory order (channel-major after a conv)
        out = empty_in_order(xp, shape, x.dtype, order)
        arg = empty_in_order(xp, shape, xp.int8 if ph * pw <= 127 else xp.int32, order)
        widths = [(0, 0)] * (x.ndim - 2) + [(pad, pad), (pad, pad)]

        def work(lo, hi):
            xs, o, a = x[lo:hi], out[lo:hi], arg[lo:hi]
            if pad:
                xs = xp.pad(xs, widths, constant_values=-xp.inf)
            for k, (rows, cols) in enumerate(offsets):
                window = xs[..., rows, cols]
                if k == 0:
                    o[...] = window
                    a[...] = 0
                    continue
                # Strictly greater, so the first maximum keeps its place; the
                # winner is the last offset that raised the running maximum, so
                # arg = max_k(k * greater_k): plain arithmetic, where a masked
                # write (copyto where=, putmask) costs several times as much.
                greater = window > o
                xp.maximum(o, window, out=o)
                xp.maximum(a, greater * a.dtype.type(k), out=a)

        self.each_part(work, x.shape[0], x.nbytes)
        return out, arg

    def max_pool_grad(self, dout, arg, x, ph, pw, stride, pad):
        xp = self.xp
        h, w = x.shape[-2:]
        out_h, out_w = dout.shape[-2:]
        offsets = window_slices(ph, pw, stride, out_h, out_w)
        shape = x.shape[:-2] + (h + 2 * pad, w + 2 * pad)
        dx = empty_in_order(xp, shape, dout.dtype, memory_order(x))
        dout = self._laid_out_as(dout, arg)
        overlap = stride < ph or stride < pw
        tiled = not overlap and not pad and (h, w) == (ph * out_h, pw * out_w)

        def work(lo, hi):
            part, dp, a = dx[lo:hi], dout[lo:hi], arg[lo:hi]
            if not tiled:
                part[...] = 0
            for k, (rows, cols) in enumerate(offsets):
                if overlap:
                    part[..., rows, cols] += dp * (a == k)
                else:  # each pixel is in one window at most: written, not added
                    xp.multiply(dp, a == k, out=part[..., rows, cols])

        self.each_part(work, x.shape[0], dx.nbytes)
        return dx[..., pad:pad + h, pad:pad + w] if pad else dx

    def _laid_out_as(self, a, like):
        """``a``, copied into ``like``'s memory order if it is in another: e.g. an Affine's
        ``dx`` (sample-major) for a convolution's channel-major layout, where one copy
        saves the passes after it walking two layouts."""
        if memory_order(a) == memory_order(like):
            return a
        laid = empty_in_order(self.xp, a.shape, a.dtype, memory_order(like))
        self.each_part(lambda lo, hi: laid[lo:hi].__setitem__(Ellipsis, a[lo:hi]),
                       a.shape[0], a.nbytes)
        return laid

    def softmax_cross_entropy(self, x, t, rows):
        if t.ndim != 1:
            return super().softmax_cross_entropy(x, t, rows)
        xp = self.xp
        if self.device_arrays:  # never read: a label outside its row gives a NaN loss
            valid = (t >= 0) & (t < x.shape[1])  # (CuPy's indexing would wrap it silently)
        else:  # each label's flat position, checked (NumPy's indexing wraps a negative one)
            try:
                where = self._ravel_multi_index((rows, t), x.shape)
            except ValueError:
                raise IndexError(f"a label outside 0..{x.shape[1] - 1}") from None
        shifted, e, s = self._exp_parts(x)
        e /= s
        if self.device_arrays:  # NaN as a Python scalar: no copy to the device
            picked = xp.where(valid, shifted[rows, xp.where(valid, t, 0)], float("nan"))
            labels = t
        else:
            picked, labels = shifted.take(where), FlatLabels(where)
        # the sum, then the division: a third of mean()'s cost
        loss = self._sum(xp.log(s)[:, 0] - picked, axis=None) / x.shape[0]
        return loss, e, labels

    def softmax_cross_entropy_grad(self, y, labels, scale, rows):
        if type(labels) is FlatLabels:  # the forward's checked positions (the host's)
            dx = y.copy()
            dx.reshape(-1)[labels.where] -= 1
        elif labels.ndim != 1:
            return super().softmax_cross_entropy_grad(y, labels, scale, rows)
        else:  # the labels as they are (a device's)
            dx = y.copy()
            dx[rows, labels] -= 1
        dx *= scale
        return dx

    def _astype(self, x, dtype):
        return x.astype(dtype)

    def _exp_parts(self, x):
        shifted = x - self._max(x, axis=-1, keepdims=True)
        e = self.xp.exp(shifted)
        return shifted, e, self._sum(e, axis=-1, keepdims=True)

    def set_at(self, a, i, value):
        a[i] = value
        return a

    def perturbed_copies(self, base, index, moved, axis):
        # the copies, then each one's slice added to in place through a fancy index
        xp = self.xp
        k = index.shape[0]
        out = xp.broadcast_to(base, (k,) + base.shape).copy()
        xp.moveaxis(out, axis + 1, 1)[xp.arange(k), index] += moved
        return out

    def uniform(self, key, counter, shape, first=0):
        return splitmix.uniform(self.xp, key, counter, shape, first)

    def keep(self, key, counter, shape, ratio, first=0):
        # uint64 arithmetic and float64 numbers (CuPy's kernel draws them): exact as they are
        return self.uniform(key, counter, shape, first) > ratio

    def increment(self, counter):
        counter += 1  # in place on the device: a recorded step advances it at every replay
        return counter

    def __repr__(self):
        return f"<{self.name} ops on {self.xp.__name__}>"


class FlatLabels:
    """Integer labels as the flat positions ``n * C + t_n`` of their entries in an
    ``(N, C)`` array, each checked to lie in its row: what the host's
    :meth:`StridedOps.softmax_cross_entropy` hands its gradient."""

    __slots__ = ("where",)

    def __init__(self, where):
        self.where = where


def memory_order(a):
    """``a``'s axes from the largest stride to the smallest: its memory order."""
    return tuple(sorted(range(a.ndim), key=lambda i: -abs(a.strides[i])))


def empty_in_order(xp, shape, dtype, order):
    """An empty array of ``shape`` whose axes lie in memory in ``order`` (as
    :func:`memory_order` gives it)."""
    inverse = [0] * len(order)
    for position, axis in enumerate(order):
        inverse[axis] = position
    return xp.empty(tuple(shape[i] for i in order), dtype=dtype).transpose(inverse)
