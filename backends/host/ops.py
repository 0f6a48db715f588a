"""The host's operations: :class:`backends.ops.Ops` on every core, and compiled C kernels.

:class:`HostOps` runs NumPy's array code (:class:`backends.ops.StridedOps`) on ranges of
samples in :mod:`backends.host.threads`' pool, splits large matrix products itself
while it holds BLAS's threads (inside a convolutional network's call), and hands the
convolution at stride 1, ReLU's forward and 2 x 2 max pooling to the compiled kernels
of :mod:`backends.host.build` where they load. Results depend on the thread count,
never on timing.
"""

import math

import numpy

from backends.arrays import native_order
from backends.host import conv
from backends.host import threads as _threads
from backends.ops.strided import StridedOps, empty_in_order, memory_order

MIN_PART_SIDE = 32  # split a product's output no thinner than this


def _planes(a):
    """Whether ``a`` lies in memory as compact planes of its last two axes (``H x W``),
    its other axes in any order: what the compiled pooling walks."""
    order = memory_order(a)
    return a.ndim >= 2 and order[-2:] == (a.ndim - 2, a.ndim - 1) \
        and a.transpose(order).flags.c_contiguous


class HostOps(StridedOps):
    """NumPy's operations on ``threads`` threads, and the compiled kernels ``kernels()``
    gives (a function returning ``(Kernels or None, why)``, called on first need; None:
    NumPy code only). ``compiled = False`` keeps the NumPy code too.

    When each fast path applies (elsewhere :class:`backends.ops.StridedOps`' NumPy code,
    on one thread):

    * ``matmul``: split across the threads (by output columns, rows, or a long K into
      partial sums added in order) while BLAS is lent (:meth:`scope`, inside a
      convolutional network's call), for 2-D operands with enough work for two parts;
    * ``conv``, ``conv_grad``: the compiled direct convolution at stride 1, one float
      dtype throughout, where the kernels load; else im2col and col2im split by samples;
    * ``relu`` (with its mask): the compiled one-pass kernel from 512 KB, for compact
      arrays in one memory order; split NumPy passes otherwise from 512 KB;
    * ``relu_backward``: split from 512 KB;
    * ``max_pool``, ``max_pool_grad``: the compiled kernels for 2 x 2 windows at stride 2
      without padding, float32 or float64, planes compact; else NumPy's split by samples;
    * ``adam_step_size``: the count read from host memory, the step size in Python's
      floats (the book's bits);
    * ``sgd_update_all``: always, the reference's ``p -= lr * g`` written in place in one
      loop, without a call per parameter (NumPy's arrays are never rebound).
    """

    name = "host"

    def __init__(self, xp, threads=1, kernels=None, backend=None, blas=None):
        super().__init__(xp, backend)
        self.pool = _threads.Pool(int(threads))
        self.threads = self.pool.threads
        # BLAS's threads are the process's: one Blas for every HostOps the registry makes
        # (each settings snapshot has its own operations), else one of its own
        self.blas = blas if blas is not None else _threads.Blas()
        self._load_kernels = kernels
        self._kernels = None  # (Kernels or None, why), once asked for
        self._zeros = {}  # dtype -> its zero, for ReLU
        self._split_bytes = 2 * _threads.MIN_PART_BYTES  # element-wise passes split from here
        self.compiled = kernels is not None
        if xp is numpy:  # the reductions without NumPy's Python wrappers (the same sums)
            self._sum, self._max = numpy.add.reduce, numpy.maximum.reduce

    def kernels(self):
        """The compiled kernels, or None (off, not built, or ``compiled`` False)."""
        if not self.compiled:
            return None
        if self._kernels is None:
            self._kernels = self._load_kernels()
        return self._kernels[0]

    # --- the threads ---------------------------------------------------------------

    def scope(self):
        return self.blas.scope()

    def parts(self, n, nbytes=0, macs=0):
        return self.pool.parts(n, nbytes, macs)

    def each_part(self, work, n, nbytes=0, macs=0):
        self.pool.each_part(work, n, nbytes, macs)

    def _borrow_blas(self):
        """From here to the end of the network call: BLAS on one thread, products split here."""
        if self.threads > 1:
            self.blas.borrow()

    def matmul(self, a, b, bias=None, out=None):
        xp = self.xp
        if self.blas._limiter is None:  # BLAS runs its own threads (StridedOps' product)
            out = a @ b if out is None else xp.matmul(a, b, out=out)
            if bias is not None:
                out += bias
            return out
        if self.threads < 2 or a.ndim != 2 or b.ndim != 2:
            return super().matmul(a, b, bias, out)
        m, k = a.shape
        n = b.shape[1]
        macs = m * n * k
        if self.parts(self.threads, macs=macs) < 2:
            return super().matmul(a, b, bias, out)
        if out is None:
            out = xp.empty((m, n), dtype=xp.result_type(a, b))
        if max(m, n) >= 2 * MIN_PART_SIDE:
            if n >= m:  # by output columns (a convolution's columns are samples)
                def work(lo, hi):
                    xp.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
                    if bias is not None:
                        out[:, lo:hi] += bias[lo:hi]
                self.each_part(work, n, macs=min(macs, n // MIN_PART_SIDE * _threads.MIN_PART_MACS))
            else:  # by output rows
                def work(lo, hi):
                    xp.matmul(a[lo:hi], b, out=out[lo:hi])
                    if bias is not None:
                        out[lo:hi] += bias
                self.each_part(work, m, macs=min(macs, m // MIN_PART_SIDE * _threads.MIN_PART_MACS))
            return out
        # A small output summed over a long k (a convolution's dW): partial sums, in order.
        count = self.parts(k, macs=macs)
        bounds = [k * i // count for i in range(count + 1)]
        partial = xp.empty((count, m, n), dtype=out.dtype)

        def work(lo, hi):
            for i in range(lo, hi):
                xp.matmul(a[:, bounds[i]:bounds[i + 1]], b[bounds[i]:bounds[i + 1]],
                          out=partial[i])

        self.each_part(work, count, macs=macs)
        xp.sum(partial, axis=0, out=out)
        if bias is not None:
            out += bias
        return out

    def affine_grad(self, x, dout, W, input_grad=True):
        if self.blas._limiter is not None:  # BLAS lent to xpnet: products split here
            return super().affine_grad(x, dout, W, input_grad)
        dW = x.T @ dout  # StridedOps' three products, without a call each
        db = self._sum(dout, axis=0)
        return (dout @ W.T if input_grad else None), dW, db

    def sgd_update_all(self, params, grads, lr):
        for key, p in params.items():
            q = p
            q -= lr * grads[key]  # sgd_update's update, in place
            if q is not p:  # a number, not an array (the book's 6.1.7 moves Python floats)
                params[key] = q

    def adam_step_size(self, t, lr, beta1, beta2):
        # The count is in host memory, so reading it costs nothing; Python's floats give
        # the book's step size to the last bit (NumPy's vectorised pow may differ by an ulp).
        t += 1
        n = float(t)
        return t, self.xp.float64(lr * math.sqrt(1.0 - beta2 ** n) / (1.0 - beta1 ** n))

    # --- the convolution -----------------------------------------------------------

    def _direct_kernels(self, x, W, b, stride):
        """The compiled kernels for this convolution, or None: they take stride 1, float32
        or float64, one dtype throughout."""
        if stride != 1 or not (x.dtype == W.dtype == b.dtype) \
                or x.dtype.name not in ("float32", "float64") or not x.dtype.isnative:
            return None  # (a big-endian array's bytes are no float the kernels read)
        return self.kernels()

    def conv(self, x, W, b, stride, pad, out_h, out_w):
        with self.scope():  # a convolution outside a network call gives BLAS back too
            self._borrow_blas()
            kernels = self._direct_kernels(x, W, b, stride)
            if kernels is None:
                return super().conv(x, W, b, stride, pad, out_h, out_w)
            out, grid = conv.forward(self, kernels, x, W, b, pad, out_h, out_w)
            return out.transpose(1, 0, 2, 3), grid

    def conv_grad(self, dout, x, W, col, stride, pad, input_grad=True):
        with self.scope():
            self._borrow_blas()
            if not isinstance(col, conv.PaddedGrid):
                return super().conv_grad(dout, x, W, col, stride, pad, input_grad)
            dout = native_order(dout)  # the kernels read native floats (a big-endian dout)
            # the kernels read dout by the forward's sizes: another shape is refused, never
            # read past its end
            expected = (x.shape[0], W.shape[0], x.shape[2] + 2 * pad - W.shape[2] + 1,
                        x.shape[3] + 2 * pad - W.shape[3] + 1)
            if tuple(dout.shape) != expected:
                raise ValueError(f"conv_grad: dout has shape {tuple(dout.shape)}; the forward's "
                                 f"output had {expected}")
            dx, dW, db = conv.backward(self, self.kernels(), dout, x, W, col, pad, input_grad)
            return (None if dx is None else dx.transpose(1, 0, 2, 3)), dW, db

    # --- element-wise passes and pooling -------------------------------------------------

    def _elementwise(self, work, a):
        """Run ``work(index)`` over parts of ``a`` split along its outermost axis in memory."""
        if a.ndim == 0:
            work(())
            return
        axis = max(range(a.ndim), key=lambda i: abs(a.strides[i]))
        head = (slice(None),) * axis
        self.each_part(lambda lo, hi: work(head + (slice(lo, hi),)), a.shape[axis], a.nbytes)

    def relu(self, x, mask=True):
        xp = self.xp
        if x.nbytes < self._split_bytes or not mask:  # StridedOps' passes, on one thread
            try:
                zero = self._zeros[x.dtype]
            except KeyError:
                zero = self._zeros[x.dtype] = x.dtype.type(0)
            return xp.maximum(x, zero), (x > 0 if mask else None)
        out = xp.empty_like(x)
        keep = xp.empty_like(x, dtype=bool)
        kernels = self.kernels()
        if kernels is not None and x.dtype.name in kernels.relu and x.dtype.isnative \
                and x.transpose(memory_order(x)).flags.c_contiguous \
                and out.strides == x.strides and keep.strides == tuple(
                    s // x.itemsize for s in x.strides):
            # x, out and keep compact, in one memory order (a convolution's
            # channel-major one included): one pass over ranges of that memory
            run, item = kernels.relu[x.dtype.name], x.itemsize
            self.each_part(lambda lo, hi: run(x=x.ctypes.data + lo * item,
                                              y=out.ctypes.data + lo * item,
                                              keep=keep.ctypes.data + lo, n=hi - lo),
                           x.size, x.nbytes)
            return out, keep

        def work(s):
            xp.greater(x[s], 0, out=keep[s])
            xp.maximum(x[s], x.dtype.type(0), out=out[s])

        self._elementwise(work, x)
        return out, keep

    def relu_backward(self, dout, keep):
        if dout.nbytes < self._split_bytes:
            return dout * keep
        xp = self.xp
        dx = xp.empty_like(dout)
        self._elementwise(lambda s: xp.multiply(dout[s], keep[s], out=dx[s]), dout)
        return dx

    def _pool_kernels(self, x, ph, pw, stride, pad):
        """The compiled max pooling for ``x``, or None: it takes 2 x 2 windows at stride 2
        without padding (the book's every pooling layer), float32 or float64, ``x``
        compact as planes of ``H x W`` in whatever order (channel-major included)."""
        if (ph, pw, stride, pad) != (2, 2, 2, 0) \
                or x.dtype.name not in ("float32", "float64") or not x.dtype.isnative \
                or not _planes(x):
            return None
        return self.kernels()

    def max_pool(self, x, ph, pw, stride, pad, out_h, out_w):
        kernels = self._pool_kernels(x, ph, pw, stride, pad)
        if kernels is None:
            return super().max_pool(x, ph, pw, stride, pad, out_h, out_w)
        order = memory_order(x)  # out and arg planes in x's order, as the array code's
        out = empty_in_order(self.xp, x.shape[:-2] + (out_h, out_w), x.dtype, order)
        arg = empty_in_order(self.xp, out.shape, self.xp.int8, order)
        h, w = x.shape[-2:]
        run = kernels.max_pool[x.dtype.name]
        self.each_part(lambda lo, hi: run(x=x.ctypes.data, out=out.ctypes.data,
                                          arg=arg.ctypes.data, h=h, w=w, lo=lo, hi=hi),
                       x.size // (h * w), x.nbytes)
        return out, arg

    def max_pool_grad(self, dout, arg, x, ph, pw, stride, pad):
        if dout.shape != arg.shape:  # the kernel reads dout by arg's sizes: never past its end
            raise ValueError(f"max_pool_grad: dout has shape {tuple(dout.shape)}; the "
                             f"forward's output had {tuple(arg.shape)}")
        h, w = x.shape[-2:]
        kernels = self._pool_kernels(x, ph, pw, stride, pad)
        if kernels is None or h % 2 or w % 2 or arg.dtype != self.xp.int8 \
                or dout.dtype != x.dtype or memory_order(arg) != memory_order(x) \
                or not _planes(arg):
            return super().max_pool_grad(dout, arg, x, ph, pw, stride, pad)
        dout = self._laid_out_as(dout, arg)
        if not _planes(dout):  # a view in arg's order but not compact
            compact = empty_in_order(self.xp, dout.shape, dout.dtype, memory_order(arg))
            compact[...] = dout
            dout = compact
        dx = empty_in_order(self.xp, x.shape, dout.dtype, memory_order(x))
        run = kernels.max_pool_grad[x.dtype.name]
        self.each_part(lambda lo, hi: run(d=dout.ctypes.data, arg=arg.ctypes.data,
                                          dx=dx.ctypes.data, h=h, w=w, lo=lo, hi=hi),
                       x.size // (h * w), dx.nbytes)
        return dx

    def __repr__(self):
        return f"<{self.name} ops on {self.xp.__name__}, {self.threads} threads>"
