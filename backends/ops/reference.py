"""The reference operations: :class:`backends.ops.Ops` on the Array API standard alone.

:class:`StandardOps` is written against the standard (2024.12) and nothing else, so it
runs on any namespace: PyTorch's (through ``array_api_compat``), array-api-strict's,
NumPy's and CuPy's. It is what every library without a wing of its own computes with,
and the reference every fast path is compared with in the tests.

What the standard lacks is built from what it has: im2col from one strided slice per
filter offset (no slice runs past an axis), col2im and pooling's gradient by slice
additions into new arrays, the padding by writing into a filled array, pooling's
argmax by comparisons, the loss's gather by ``take_along_axis``, one-hot rows by
comparing with ``arange``; no ``out=``, no fancy-index assignment, no write through a
view, and every write into an array through ``array_api_extra.at``: in place where the
library writes in place, a new array (which is kept) on JAX's immutable ones. Arrays are
created on the device of the arrays they come from.
"""

import array_api_extra as xpx

from backends import splitmix
from backends.arrays import on_device_of
from backends.ops.contract import Ops


def _zero(xp, like):
    """A 0-d array of ``like``'s dtype on its device."""
    return xp.zeros((), dtype=like.dtype, **on_device_of(xp, like))


def window_slices(ph, pw, stride, out_h, out_w):
    """The strided ``(rows, cols)`` slices of a padded image, one per window offset,
    row-major; none runs past the padded image."""
    return [(slice(i, i + stride * (out_h - 1) + 1, stride),
             slice(j, j + stride * (out_w - 1) + 1, stride))
            for i in range(ph) for j in range(pw)]


class StandardOps(Ops):
    """The operations on the Array API standard: they run on any namespace.

    ``backend`` is the :class:`backends.backend.Backend` class whose arrays these are
    (None: arrays on the host): it says which arrays live on an accelerator, where a
    label past the last class must give a NaN loss rather than an error.
    """

    name = "standard"

    def __init__(self, xp, backend=None):
        super().__init__(xp)
        self.backend = backend

    def matmul(self, a, b, bias=None, out=None):
        result = self.xp.matmul(a, b)
        if bias is not None:
            result += bias  # into the product's own fresh array: no second temporary
        if out is None:
            return result
        return xpx.at(out)[...].set(result)  # into out (a new array where none is written)

    def affine_grad(self, x, dout, W, input_grad=True):
        dW = self.matmul(x.T, dout)
        db = self.xp.sum(dout, axis=0)
        return (self.matmul(dout, W.T) if input_grad else None), dW, db

    def relu(self, x, mask=True):
        # maximum, not x * keep: -inf * 0 is NaN, and maximum passes a NaN on. The standard
        # leaves the sign of maximum(-0.0, 0.0) open (PyTorch gives -0.0): adding +0.0
        # makes it the book's +0 and changes nothing else
        out = self.xp.maximum(x, _zero(self.xp, x))
        out += 0.0
        return out, (x > 0 if mask else None)

    def relu_backward(self, dout, keep):
        return dout * self.xp.astype(keep, dout.dtype)

    def sigmoid(self, x):
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def sigmoid_backward(self, dout, out):
        return dout * (1.0 - out) * out

    def _exp_parts(self, x):
        """``(x - max, exp(x - max), sum exp(x - max))`` along the last axis: what softmax,
        its logarithm and the loss share."""
        xp = self.xp
        shifted = x - xp.max(x, axis=-1, keepdims=True)
        e = xp.exp(shifted)
        return shifted, e, xp.sum(e, axis=-1, keepdims=True)

    def softmax(self, x):
        _, e, s = self._exp_parts(x)
        e /= s
        return e

    def log_softmax(self, x):
        shifted, _, s = self._exp_parts(x)
        return shifted - self.xp.log(s)

    def _padded(self, x, pad, fill):
        """``x (..., H, W)`` inside a border of ``pad`` elements of ``fill``."""
        xp = self.xp
        if not pad:
            return x
        shape = tuple(x.shape[:-2]) + (x.shape[-2] + 2 * pad, x.shape[-1] + 2 * pad)
        out = xp.full(shape, fill, dtype=x.dtype, **on_device_of(xp, x))
        return xpx.at(out)[..., pad:pad + x.shape[-2], pad:pad + x.shape[-1]].set(x)

    def _planes(self, x, pad):
        """``x (N, C, H, W)`` as zero-padded planes ``(C, N, H + 2 pad, W + 2 pad)``."""
        return self._padded(self.xp.permute_dims(x, (1, 0, 2, 3)), pad, 0)

    def _into_window(self, img, rows, cols, part, add=True):
        """``img`` with ``part`` added into (``add``), or written over, its strided window
        ``img[..., rows, cols]``: in place where the library writes in place, a new array
        on JAX (whose wing places the window by padding instead: :mod:`backends.jax.ops`)."""
        window = xpx.at(img)[..., rows, cols]
        return window.add(part) if add else window.set(part)

    def im2col(self, x, fh, fw, stride, pad, out_h, out_w, out=None):
        xp = self.xp
        n, c = x.shape[:2]
        planes = self._planes(x, pad)
        # each offset's window a strided slice (C, N, oh, ow); stacked after the channel
        # axis they are the channel-major columns in one copy, and the reshape is free
        col = xp.stack([planes[:, :, rows, cols] for rows, cols in
                        window_slices(fh, fw, stride, out_h, out_w)], axis=1)
        col = xp.reshape(col, (c * fh * fw, n * out_h * out_w))
        if out is None:
            return col
        return xpx.at(out)[...].set(col)

    def col2im(self, dcol, x_shape, fh, fw, stride, pad, out_h, out_w):
        n, c, _, _ = x_shape
        d = self.xp.reshape(dcol, (c, fh * fw, n, out_h, out_w))
        return self._add_into_windows(lambda k: d[:, k, ...], x_shape, fh, fw, stride, pad,
                                      out_h, out_w, dcol)

    def _add_into_windows(self, part, x_shape, fh, fw, stride, pad, out_h, out_w, like):
        """col2im's sum: ``part(k)`` (``(C, N, OH, OW)``, filter offset ``k``) added into
        the windows offset ``k`` read, offset by offset in row-major order, then the
        padding cut off; an ``(N, C, H, W)`` view of ``(C, N, H, W)`` memory."""
        xp = self.xp
        n, c, h, w = x_shape
        img = xp.zeros((c, n, h + 2 * pad, w + 2 * pad), dtype=like.dtype,
                       **on_device_of(xp, like))
        for k, (rows, cols) in enumerate(window_slices(fh, fw, stride, out_h, out_w)):
            # in place where the library writes in place (``a[i] += b``, one pass where
            # ``a[i]`` is a view), a new array on JAX
            img = self._into_window(img, rows, cols, part(k))
        img = img[:, :, pad:pad + h, pad:pad + w]
        return xp.permute_dims(img, (1, 0, 2, 3))

    def conv(self, x, W, b, stride, pad, out_h, out_w):
        xp = self.xp
        fn, _, fh, fw = W.shape
        col = self.im2col(x, fh, fw, stride, pad, out_h, out_w)
        out = xp.matmul(xp.reshape(W, (fn, -1)), col)
        out += b[:, None]
        out = xp.reshape(out, (fn, x.shape[0], out_h, out_w))
        return xp.permute_dims(out, (1, 0, 2, 3)), col

    def conv_grad(self, dout, x, W, col, stride, pad, input_grad=True):
        xp = self.xp
        fn, _, fh, fw = W.shape
        out_h, out_w = dout.shape[2:]
        d = xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (fn, -1))
        db = xp.sum(d, axis=1)
        dW = xp.reshape(xp.matmul(d, col.T), W.shape)
        if not input_grad:
            return None, dW, db
        # dx: each filter offset's W[:, :, k].T @ d added into the windows it read as it is
        # made (col2im's sum, in its order), never the (C FH FW, N OH OW) matrix of them all
        n, c = x.shape[:2]

        def part(k):
            w_k = W[:, :, k // fw, k % fw]
            return xp.reshape(xp.matmul(xp.matrix_transpose(w_k), d), (c, n, out_h, out_w))
        dx = self._add_into_windows(part, x.shape, fh, fw, stride, pad, out_h, out_w, dout)
        return dx, dW, db

    def max_pool(self, x, ph, pw, stride, pad, out_h, out_w):
        xp = self.xp
        img = self._padded(x, pad, -float("inf"))
        index = xp.int8 if ph * pw <= 127 else xp.int32
        out = arg = None
        for k, (rows, cols) in enumerate(window_slices(ph, pw, stride, out_h, out_w)):
            window = img[..., rows, cols]
            if k == 0:
                out = window
                arg = xp.zeros(window.shape, dtype=index, **on_device_of(xp, x))
                continue
            # strictly greater, so the first maximum keeps its place
            arg = xp.where(window > out, xp.asarray(k, dtype=index, **on_device_of(xp, x)), arg)
            out = xp.maximum(out, window)
        return out, arg

    def max_pool_grad(self, dout, arg, x, ph, pw, stride, pad):
        xp = self.xp
        h, w = x.shape[-2:]
        out_h, out_w = dout.shape[-2:]
        shape = tuple(x.shape[:-2]) + (h + 2 * pad, w + 2 * pad)
        tiled = not pad and stride == ph == pw and (h, w) == (ph * out_h, pw * out_w)
        # tiled windows (2 x 2 at stride 2 on an even image): each pixel is in one window,
        # written once; else every offset adds into zeros
        dx = (xp.empty if tiled else xp.zeros)(shape, dtype=dout.dtype, **on_device_of(xp, dout))
        for k, (rows, cols) in enumerate(window_slices(ph, pw, stride, out_h, out_w)):
            routed = dout * xp.astype(arg == k, dout.dtype)
            dx = self._into_window(dx, rows, cols, routed, add=not tiled)
        return dx[..., pad:pad + h, pad:pad + w] if pad else dx

    def _labels(self, t):
        """Integer labels as the namespace's indexing dtype (uint8 labels index nothing
        in PyTorch: its uint8 index is a mask; JAX without 64-bit integers, and a device
        without them, index with int32)."""
        info = getattr(self.xp, "__array_namespace_info__", None)
        index = (info().default_dtypes(device=getattr(t, "device", None))["indexing"]
                 if info is not None else self.xp.int64)  # the labels' device's (no_x64: 32)
        return t if t.dtype == index else self.xp.astype(t, index)

    def softmax_cross_entropy(self, x, t, rows):
        xp = self.xp
        n = x.shape[0]
        shifted, e, s = self._exp_parts(x)
        if t.ndim == 2:  # one-hot rows
            e /= s
            return xp.sum(t * (xp.log(s) - shifted)) / n, e, t
        labels = self._labels(t)
        valid = None
        if self.backend is not None and self.backend.is_device_array(t):
            # On a GPU an index past the row is a device-side assert, which ends the
            # process's use of the GPU, and checking the labels first would wait for it:
            # such a sample reads column 0 and its loss is NaN, which stops the Trainer (as
            # CuPy's kernel does). On the host the index error is raised, and named.
            valid = (labels >= 0) & (labels < x.shape[1])
            labels = xp.where(valid, labels, xp.zeros_like(labels))
        picked = xp.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]
        if valid is not None:
            picked = xp.where(valid, picked, xp.full_like(picked, float("nan")))
        loss = xp.sum(xp.log(s)[:, 0] - picked) / n
        return loss, e / s, t

    def softmax_cross_entropy_grad(self, y, t, scale, rows):
        xp = self.xp
        if t.ndim == 2:  # one-hot rows
            dx = y - t
            dx *= scale
            return dx
        classes = xp.arange(y.shape[1], **on_device_of(xp, y))
        onehot = xp.astype(self._labels(t)[:, None] == classes[None, :], y.dtype)
        return (y - onehot) * scale

    def batch_norm_center(self, x, mu):
        xc = x - mu
        return xc, self.xp.sum(xc * xc, axis=0)

    def batch_norm_normalize(self, xc, var, gamma, beta, eps):
        std = self.xp.sqrt(var + eps)
        xc /= std  # in place: x - mu is not needed again
        out = xc * gamma
        out += beta
        return out, xc, std

    def batch_norm_running(self, running_mean, running_var, mu, var, momentum):
        # in place, so the arrays a checkpoint or a CUDA graph holds stay the ones used
        running_mean *= momentum
        running_mean += (1 - momentum) * mu
        running_var *= momentum
        running_var += (1 - momentum) * var
        return running_mean, running_var

    def batch_norm_grad_sums(self, dout, xn, gamma):
        xp = self.xp
        dxn = dout * gamma
        return (xp.sum(dout, axis=0), xp.sum(xn * dout, axis=0), dxn, xp.sum(dxn, axis=0),
                xp.sum(dxn * xn, axis=0))

    def batch_norm_grad(self, dxn, xn, std, mean_dxn, mean_dxn_xn):
        dx = dxn - mean_dxn
        dx -= xn * mean_dxn_xn
        dx /= std
        return dx

    def weight_decay(self, weights, lam):
        total = 0
        for W in weights:
            total = total + self.xp.sum(W * W)
        return 0.5 * lam * total

    def weight_decay_grads(self, grads, weights, lam):
        return [g + lam * W for g, W in zip(grads, weights)]

    def sgd_update(self, p, g, lr):
        p -= lr * g  # in place, or (JAX) a new array bound to p
        return p

    def adam_step_size(self, t, lr, beta1, beta2):
        t += 1
        return t, lr * self.xp.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)

    def _astype(self, x, dtype):
        return self.xp.astype(x, dtype)

    def adam_update(self, p, g, m, v, lr_t, beta1, beta2):
        m += (1 - beta1) * (g - m)
        v += (1 - beta2) * (g * g - v)
        # lr_t in p's dtype first: a float64 array would make the product float64
        p -= self._astype(lr_t, p.dtype) * m / (self.xp.sqrt(v) + 1e-7)
        return p, m, v

    def momentum_update(self, p, g, v, lr, momentum):
        v *= momentum
        v -= lr * g
        p += v
        return p, v

    def nesterov_update(self, p, g, v, lr, momentum):
        p += momentum * momentum * v
        p -= (1 + momentum) * lr * g
        v *= momentum
        v -= lr * g
        return p, v

    def adagrad_update(self, p, g, h, lr):
        h += g * g
        p -= lr * g / (self.xp.sqrt(h) + 1e-7)
        return p, h

    def rmsprop_update(self, p, g, h, lr, decay_rate):
        h *= decay_rate
        h += (1 - decay_rate) * g * g
        p -= lr * g / (self.xp.sqrt(h) + 1e-7)
        return p, h

    def take_batch(self, x, t, order, start, stop):
        idx = order[start:stop]
        return self.xp.take(x, idx, axis=0), self.xp.take(t, idx, axis=0)

    def set_at(self, a, i, value):
        return xpx.at(a)[i].set(value)  # in place, or (JAX) a new array

    def perturbed_copies(self, base, index, moved, axis):
        xp = self.xp
        k, width = index.shape[0], base.shape[axis]
        # copy k's slice picked by a one-hot row (the standard has no fancy-index assignment)
        onehot = xp.astype(index[:, None] == xp.arange(width, **on_device_of(xp, base))[None, :],
                           base.dtype)
        lead = (k,) + (1,) * axis + (width,) + (1,) * (base.ndim - axis - 1)
        if not isinstance(moved, (int, float)):
            moved = xp.expand_dims(moved, axis=axis + 1)
        return base[None, ...] + moved * xp.reshape(onehot, lead)

    def uniform(self, key, counter, shape, first=0):
        """Dropout's numbers in [0, 1) for ``shape``, from the generator's index ``first``
        on (:mod:`backends.splitmix`): the same bits on every backend."""
        if splitmix.in_words(key):
            return splitmix.uniform_words(self.xp, key, counter, shape, first)
        return splitmix.uniform_halves(self.xp, key, counter, shape, first)

    def keep(self, key, counter, shape, ratio, first=0):
        # compared in integers, before the numbers are rounded to a float32 device's
        if splitmix.in_words(key):
            return splitmix.keep_words(self.xp, key, counter, shape, ratio, first)
        return splitmix.keep_halves(self.xp, key, counter, shape, ratio, first)

    def increment(self, counter):
        xp = self.xp
        if splitmix.in_words(counter):
            return xpx.at(counter)[...].set(splitmix.increment_words(xp, counter))
        return xpx.at(counter)[...].set(xp.astype(xp.astype(counter, xp.int64) + 1,
                                                  counter.dtype))
