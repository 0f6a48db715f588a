"""The CPU's operations: :class:`backends.ops.Ops` run on every core by one thread pool.

NumPy runs an element-wise pass or a strided copy on one thread, and on the
2-core VM of docs/performance.md one core moves memory at about half the
speed two do (DeepConvNet's largest im2col copy, 43 MB: 7.4 ms on one
thread, 2.5 ms split in two). NumPy releases the GIL in those loops, so
:class:`HostOps` runs the same array code (:meth:`Ops.each_part`) on sample
ranges in a small thread pool.

That only pays if nothing else is spinning on the cores. OpenBLAS's own
worker threads busy-wait for about 0.1 s after each product, so a pass split
in two right after a product ran no faster than on one thread. So when the
first convolution runs, HostOps sets NumPy's BLAS to one thread for the
rest of the process, through threadpoolctl (which finds OpenBLAS, MKL or
BLIS in whatever NumPy build is installed), and from then on splits the
large products itself: by output columns or rows, or, for a long sum of
small products (a convolution's dW), into partial sums added in a fixed
order. Results depend on the thread count, never on timing. Processes that
run no convolution (the book's fully connected nets, whose passes are too
small to split) keep BLAS's own threads. :func:`default_blas` gives BLAS its
threads back for a block of code (the benchmark's reference rows run under
it).

Convolutions at stride 1 (all of the book's) skip im2col altogether where
a C compiler is found: :mod:`backends.cpu_kernels`'s kernels compute the
output, ``dW`` and ``dx`` from the padded input on a grid, parts of the grid
on the pool's threads (ctypes lets go of the GIL). ``HostOps.compiled = False``
or ``XPNET_HOST_KERNELS=0`` keeps im2col + BLAS. Max pooling over 2 x 2
windows at stride 2 runs on that library's kernels too, on ranges of planes.

``XPNET_HOST_THREADS`` sets the number of threads (default: the cores this
process may run on, at most 8, or 1 where threadpoolctl is not installed,
since BLAS's spinning workers would take the other cores); 1 turns the
splitting off and leaves BLAS alone.
"""

import collections
import concurrent.futures
import contextlib
import math
import os
import threading

from backends import cpu_kernels
from backends.ops import Ops, _empty, _order

ENV_VAR = "XPNET_HOST_THREADS"
MAX_DEFAULT_THREADS = 8  # memory-bound passes stop scaling well before that many cores
MIN_PART_BYTES = 1 << 18  # a part smaller than ~256 KB costs more to hand over than it saves
MIN_PART_MACS = 1 << 23  # ~8M multiply-adds, ~0.3 ms on one core: worth a hand-over
MIN_PART_SIDE = 32  # split a product's output no thinner than this

# What the compiled convolution keeps for backward: the zero-padded input, each channel
# one row (``data (C, >= length + reach)``), its images ``hp x wp``, ``length``
# grid positions computed (whole kernel blocks).
PaddedGrid = collections.namedtuple("PaddedGrid", "data hp wp length")

_controller = None  # threadpoolctl's view of the loaded BLAS, made once
_blas_default = None  # BLAS's thread count before HostOps set it to one


def _blas():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            found = ThreadpoolController().select(user_api="blas")
            _controller = found if found.lib_controllers else False
    return _controller or None


def host_threads(environ=None):
    """The thread count: ``$XPNET_HOST_THREADS`` if set (a positive integer), else the
    cores this process may use (at most 8), or 1 where BLAS's threads cannot be set."""
    raw = (os.environ if environ is None else environ).get(ENV_VAR)
    if raw is None or raw.strip() == "":
        if _blas() is None:
            return 1
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, min(cores, MAX_DEFAULT_THREADS))
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{ENV_VAR}={raw!r}: expected a positive integer, the number of "
                         f"threads xpnet uses on the CPU (1: none of its own, BLAS left alone)")
    return threads


def blas_summary():
    """One line on NumPy's BLAS and its threads, for ``python -m backends``."""
    blas = _blas()
    if blas is None:
        return "BLAS threads left to BLAS (threadpoolctl not installed or no BLAS found)"
    libs = ", ".join(f"{c.internal_api} {c.num_threads} thread(s)" for c in blas.lib_controllers)
    state = ("set to one by xpnet since the first convolution" if _blas_default is not None
             else "its own until the first convolution")
    return f"BLAS: {libs} ({state})"


@contextlib.contextmanager
def default_blas():
    """Within the block, BLAS runs on the threads it had before xpnet set it to one."""
    blas = _blas()
    if blas is None or _blas_default is None:
        yield
        return
    with blas.limit(limits=_blas_default, user_api="blas"):
        yield


def _by_filters(kernels, filters, itemsize):
    """Whether the kernels vectorised over the filters pay: two or more whole vectors of
    them (with one, each tap's few loads feed as few multiply-adds, and the grid kernels
    measured faster: Conv2 of DeepConvNet, 16 filters)."""
    vector = kernels.vector_bytes // itemsize
    return filters % vector == 0 and filters >= 2 * vector


def _planes(a):
    """Whether ``a`` lies in memory as compact planes of its last two axes (``H x W``),
    its other axes in any order: what the compiled pooling walks."""
    order = _order(a)
    return a.ndim >= 2 and order[-2:] == (a.ndim - 2, a.ndim - 1) \
        and a.transpose(order).flags.c_contiguous


class HostOps(Ops):
    """NumPy's operations, split by samples across ``threads`` threads where the work is large."""

    name = "host"

    def __init__(self, xp, threads=None):
        super().__init__(xp)
        self.threads = host_threads() if threads is None else int(threads)
        self._pool = None
        self._pool_pid = None
        self._local = threading.local()  # .inside: this thread is running a part already
        self.compiled = True  # backends.cpu_kernels where they load (else NumPy code only)

    @staticmethod
    def _single_thread_blas():
        global _blas_default
        blas = _blas()
        if blas is None or _blas_default is not None:
            return
        _blas_default = max(c.num_threads for c in blas.lib_controllers)
        blas.limit(limits=1, user_api="blas")  # kept until default_blas() or the process ends

    def _executor(self):
        # A forked child inherits the pool object but none of its threads: work
        # queued there would wait forever, so each process makes its own.
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.threads - 1, thread_name_prefix="xpnet-host")
            self._pool_pid = os.getpid()
        return self._pool

    def parts(self, n, nbytes=0, macs=0):
        return max(1, min(self.threads, n, max(nbytes // MIN_PART_BYTES, macs // MIN_PART_MACS)))

    def each_part(self, work, n, nbytes=0, macs=0):
        parts = self.parts(n, nbytes, macs)
        if parts < 2 or getattr(self._local, "inside", False):
            work(0, n)  # small, or called from inside a part: no nested split
            return
        bounds = [n * i // parts for i in range(parts + 1)]
        futures = [self._executor().submit(self._part, work, lo, hi)
                   for lo, hi in zip(bounds[1:-1], bounds[2:])]
        try:
            self._part(work, bounds[0], bounds[1])  # the calling thread takes the first part
        finally:
            concurrent.futures.wait(futures)  # never return while a part still writes
        for future in futures:
            future.result()  # re-raises a part's error

    def _part(self, work, lo, hi):
        self._local.inside = True
        try:
            work(lo, hi)
        finally:
            self._local.inside = False

    def adam_step_size(self, t, lr, beta1, beta2):
        # The count is in host memory, so reading it costs nothing; Python's floats give
        # the book's step size to the last bit (NumPy's vectorised pow may differ by an ulp).
        t += 1
        n = float(t)
        return self.xp.float64(lr * math.sqrt(1.0 - beta2 ** n) / (1.0 - beta1 ** n))

    def matmul(self, a, b, bias=None, out=None):
        if _blas_default is None or self.threads < 2 or a.ndim != 2 or b.ndim != 2:
            return super().matmul(a, b, bias, out)  # BLAS still runs its own threads
        m, k = a.shape
        n = b.shape[1]
        macs = m * n * k
        if self.parts(self.threads, macs=macs) < 2:
            return super().matmul(a, b, bias, out)
        xp = self.xp
        if out is None:
            out = xp.empty((m, n), dtype=xp.result_type(a, b))
        if max(m, n) >= 2 * MIN_PART_SIDE:
            if n >= m:  # by output columns (a convolution's columns are samples)
                def work(lo, hi):
                    xp.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
                    if bias is not None:
                        out[:, lo:hi] += bias[lo:hi]
                self.each_part(work, n, macs=min(macs, n // MIN_PART_SIDE * MIN_PART_MACS))
            else:  # by output rows
                def work(lo, hi):
                    xp.matmul(a[lo:hi], b, out=out[lo:hi])
                    if bias is not None:
                        out[lo:hi] += bias
                self.each_part(work, m, macs=min(macs, m // MIN_PART_SIDE * MIN_PART_MACS))
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

    def _direct_kernels(self, x, W, b, stride):
        """The compiled direct convolution (:mod:`backends.cpu_kernels`) for these arrays,
        or None: it takes stride 1, float32 or float64, one dtype throughout."""
        if not self.compiled or stride != 1 or not (x.dtype == W.dtype == b.dtype) \
                or x.dtype.name not in ("float32", "float64"):
            return None
        return cpu_kernels.load()[0]

    def conv(self, x, W, b, stride, pad, out_h, out_w):
        if _blas_default is None and self.threads > 1:
            self._single_thread_blas()  # from the first convolution on, products split here
        kernels = self._direct_kernels(x, W, b, stride)
        if kernels is None:
            return super().conv(x, W, b, stride, pad, out_h, out_w)
        xp = self.xp
        n, c, h, w = x.shape
        fn, _, fh, fw = W.shape
        dtype = x.dtype.name
        block = kernels.block[dtype]
        hp, wp = h + 2 * pad, w + 2 * pad
        length = -(-n * hp * wp // block) * block
        grid = PaddedGrid(self._to_grid(x.transpose(1, 0, 2, 3), hp, wp, pad, pad,
                                        length + (fh - 1) * wp + fw - 1), hp, wp, length)
        out = self._convolve(kernels, grid, n, W, b, out_h, out_w)
        return out.transpose(1, 0, 2, 3), grid

    def conv_grad(self, dout, x, W, col, stride, pad, input_grad=True):
        if not isinstance(col, PaddedGrid):
            return super().conv_grad(dout, x, W, col, stride, pad, input_grad)
        kernels = cpu_kernels.load()[0]
        xp = self.xp
        fn, c, fh, fw = W.shape
        n, _, h, w = x.shape
        out_h, out_w = dout.shape[2:]
        dtype = dout.dtype.name
        d = dout.transpose(1, 0, 2, 3)  # (FN, N, out_h, out_w)
        qh, qw = fh - 1 - pad, fw - 1 - pad  # dx: dout padded by filter - 1 - pad
        block = kernels.block[dtype]
        hq, wq = out_h + 2 * qh, out_w + 2 * qw  # = h + fh - 1, w + fw - 1
        length = -(-n * hq * wq // block) * block
        padded = None
        if _by_filters(kernels, fn, dout.itemsize):
            dW, db = self._pixel_dw(kernels, d, col, W.shape)
        else:
            if input_grad and (hq, wq) == (col.hp, col.wp):
                # a "same" convolution (filter 2 pad + 1): dout padded for dx is dout
                # on the forward's grid shifted by (qh, qw), so one copy serves both
                shift = qh * wq + qw
                padded = self._to_grid(d, hq, wq, qh, qw, col.length + 2 * shift)
                grad = padded[:, shift:shift + col.length]
            else:  # dout on the forward's grid, 0 where the grid has no output
                grad = self._to_grid(d, col.hp, col.wp, 0, 0, col.length)
            db = grad.sum(axis=1)
            dW = self._grid_dw(kernels, dtype, grad, col, W.shape)
        if not input_grad:
            return None, dW, db
        if qh < 0 or qw < 0:  # padding wider than the filter: some pixels reach no output
            dcol = self.matmul(W.reshape(fn, -1).T, xp.ascontiguousarray(d).reshape(fn, -1))
            return self.col2im(dcol, x.shape, fh, fw, stride, pad, out_h, out_w), dW, db
        # dx: the padded dout correlated with the filters turned 180 degrees and
        # their axes swapped (C, FN, fh, fw)
        if padded is None:
            padded = self._to_grid(d, hq, wq, qh, qw, length + (fh - 1) * wq + fw - 1)
        flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        dx = self._convolve(kernels, PaddedGrid(padded, hq, wq, length), n, flipped,
                            xp.zeros(c, dtype=dout.dtype), h, w)
        return dx.transpose(1, 0, 2, 3), dW, db

    def _convolve(self, kernels, grid, n, W, b, out_h, out_w):
        """``(F, N, out_h, out_w)``: the grid's images correlated with ``W (F, C, fh, fw)``,
        plus ``b``. Vectorised over the filters, at the valid output pixels only, where
        :func:`_by_filters`; else a block of grid positions at a time, vectorised over
        the pixels whatever F, at a border's extra work."""
        xp = self.xp
        fn, c, fh, fw = W.shape
        dtype = W.dtype.name
        data, hp, wp = grid.data, grid.hp, grid.wp
        out = xp.empty((fn, n, out_h, out_w), dtype=W.dtype)
        b = xp.ascontiguousarray(b)
        pixels = n * out_h * out_w
        if _by_filters(kernels, fn, W.itemsize):
            taps = xp.ascontiguousarray(W.transpose(1, 2, 3, 0))  # (C, fh, fw, F)
            self.each_part(lambda lo, hi: kernels.conv_px[dtype](
                data.ctypes.data, data.shape[1], taps.ctypes.data, b.ctypes.data, fn, c, fh,
                fw, hp, wp, out_h, out_w, out.ctypes.data, pixels, lo, hi),
                pixels, macs=W.size * pixels)
            return out
        W = xp.ascontiguousarray(W)
        self._grid_blocks(lambda lo, hi: kernels.conv[dtype](
            data.ctypes.data, data.shape[1], W.ctypes.data, b.ctypes.data, fn, c, fh, fw, hp,
            wp, out_h, out_w, n * hp * wp, out.ctypes.data, pixels, lo, hi),
            grid.length, kernels.block[dtype], W.size)
        return out

    def _pixel_dw(self, kernels, d, grid, shape):
        """``(dW, db)`` from ``d (F, N, out_h, out_w)`` copied pixel-major: vectorised over
        the filters, partial sums over ranges of pixels added in order."""
        xp = self.xp
        fn, c, fh, fw = shape
        _, n, out_h, out_w = d.shape
        pixels = n * out_h * out_w
        flat = d.reshape(fn, pixels)
        by_pixel = xp.empty((pixels, fn), dtype=d.dtype)
        self.each_part(lambda lo, hi: by_pixel[lo:hi].__setitem__(Ellipsis, flat[:, lo:hi].T),
                       pixels, by_pixel.nbytes)
        macs = fn * c * fh * fw * pixels
        count = self.parts(pixels, macs=macs)
        bounds = [pixels * i // count for i in range(count + 1)]
        partial = xp.zeros((count, c * fh * fw, fn), dtype=d.dtype)
        run = kernels.dw_px[d.dtype.name]

        def work(lo, hi):
            for i in range(lo, hi):
                run(by_pixel.ctypes.data, fn, grid.data.ctypes.data, grid.data.shape[1], c, fh,
                    fw, grid.hp, grid.wp, out_h, out_w, partial[i].ctypes.data, bounds[i],
                    bounds[i + 1])

        self.each_part(work, count, macs=macs)
        taps = partial[0] if count == 1 else partial.sum(axis=0)  # (C * fh * fw, F)
        return xp.ascontiguousarray(taps.T).reshape(shape), flat.sum(axis=1)

    def _to_grid(self, planes, hp, wp, top, left, row):
        """``planes (C, N, H, W)`` as rows of length ``row``: each sample an ``hp x wp``
        image with the planes at ``(top, left)``, zeros around them and after."""
        xp = self.xp
        c, n, h, w = planes.shape
        grid = xp.empty((c, row), dtype=planes.dtype)
        grid[:, n * hp * wp:] = 0
        images = grid[:, :n * hp * wp].reshape(c, n, hp, wp)

        def work(lo, hi):
            part = images[:, lo:hi]
            part[:, :, :top] = 0
            part[:, :, top + h:] = 0
            part[:, :, top:top + h, :left] = 0
            part[:, :, top:top + h, left + w:] = 0
            part[:, :, top:top + h, left:left + w] = planes[:, lo:hi]

        self.each_part(work, n, grid.nbytes)
        return grid

    def _grid_blocks(self, run, length, block, filter_size):
        """``run(lo, hi)`` over the grid's outputs, whole blocks a part, on every thread."""
        blocks = length // block
        self.each_part(lambda lo, hi: run(lo * block, hi * block), blocks,
                       macs=filter_size * length)

    def _grid_dw(self, kernels, dtype, grad, grid, shape):
        """dW as partial sums over ranges of the grid, added in order; ``grad``'s rows
        (dout on the grid) may be a view into longer ones."""
        xp = self.xp
        step = kernels.vector_bytes // grad.itemsize
        vectors = grid.length // step
        fn, c, fh, fw = shape
        count = self.parts(vectors, macs=fn * c * fh * fw * grid.length)
        bounds = [vectors * i // count * step for i in range(count + 1)]
        partial = xp.zeros((count,) + tuple(shape), dtype=grad.dtype)

        def work(lo, hi):
            for i in range(lo, hi):
                kernels.dw[dtype](grad.ctypes.data, grad.strides[0] // grad.itemsize,
                                  grid.data.ctypes.data,
                                  grid.data.shape[1], fn, c, fh, fw, grid.wp,
                                  partial[i].ctypes.data, bounds[i], bounds[i + 1],
                                  cpu_kernels.DW_CHUNK)

        self.each_part(work, count, macs=fn * c * fh * fw * grid.length)
        return partial[0] if count == 1 else partial.sum(axis=0)

    def _elementwise(self, work, a):
        """Run ``work(index)`` over parts of ``a`` split along its outermost axis in memory."""
        if a.ndim == 0:
            work(())
            return
        axis = max(range(a.ndim), key=lambda i: abs(a.strides[i]))
        head = (slice(None),) * axis
        self.each_part(lambda lo, hi: work(head + (slice(lo, hi),)), a.shape[axis], a.nbytes)

    def relu(self, x):
        if x.nbytes < 2 * MIN_PART_BYTES:  # too small to split: the plain two passes
            return super().relu(x)
        xp = self.xp
        out = xp.empty_like(x)
        keep = xp.empty_like(x, dtype=bool)
        kernels = cpu_kernels.load()[0] if self.compiled else None
        if kernels is not None and x.dtype.name in kernels.relu \
                and x.transpose(_order(x)).flags.c_contiguous \
                and out.strides == x.strides and keep.strides == tuple(
                    s // x.itemsize for s in x.strides):
            # x, out and keep compact, in one memory order (a convolution's
            # channel-major one included): one pass over ranges of that memory
            run, item = kernels.relu[x.dtype.name], x.itemsize
            self.each_part(lambda lo, hi: run(x.ctypes.data + lo * item,
                                              out.ctypes.data + lo * item,
                                              keep.ctypes.data + lo, hi - lo), x.size, x.nbytes)
            return out, keep

        def work(s):
            xp.greater(x[s], 0, out=keep[s])
            xp.maximum(x[s], x.dtype.type(0), out=out[s])

        self._elementwise(work, x)
        return out, keep

    def relu_backward(self, dout, keep):
        if dout.nbytes < 2 * MIN_PART_BYTES:
            return super().relu_backward(dout, keep)
        xp = self.xp
        dx = xp.empty_like(dout)
        self._elementwise(lambda s: xp.multiply(dout[s], keep[s], out=dx[s]), dout)
        return dx

    def _pool_kernels(self, x, ph, pw, stride, pad):
        """The compiled max pooling for ``x``, or None: it takes 2 x 2 windows at stride 2
        without padding (the book's every pooling layer), float32 or float64, ``x``
        compact as planes of ``H x W`` in whatever order (channel-major included)."""
        if not self.compiled or (ph, pw, stride, pad) != (2, 2, 2, 0) \
                or x.dtype.name not in ("float32", "float64") or not _planes(x):
            return None
        return cpu_kernels.load()[0]

    def max_pool(self, x, ph, pw, stride, pad, out_h, out_w):
        kernels = self._pool_kernels(x, ph, pw, stride, pad)
        if kernels is None:
            return super().max_pool(x, ph, pw, stride, pad, out_h, out_w)
        order = _order(x)  # out and arg planes in x's order, as the array code's
        out = _empty(self.xp, x.shape[:-2] + (out_h, out_w), x.dtype, order)
        arg = _empty(self.xp, out.shape, self.xp.int8, order)
        h, w = x.shape[-2:]
        run = kernels.max_pool[x.dtype.name]
        self.each_part(lambda lo, hi: run(x.ctypes.data, out.ctypes.data, arg.ctypes.data,
                                          h, w, lo, hi), x.size // (h * w), x.nbytes)
        return out, arg

    def max_pool_grad(self, dout, arg, x, ph, pw, stride, pad):
        h, w = x.shape[-2:]
        kernels = self._pool_kernels(x, ph, pw, stride, pad)
        if kernels is None or h % 2 or w % 2 or arg.dtype != self.xp.int8 \
                or dout.dtype != x.dtype or _order(arg) != _order(x) or not _planes(arg):
            return super().max_pool_grad(dout, arg, x, ph, pw, stride, pad)
        dout = self._laid_out_as(dout, arg)
        if not _planes(dout):  # a view in arg's order but not compact
            compact = _empty(self.xp, dout.shape, dout.dtype, _order(arg))
            compact[...] = dout
            dout = compact
        dx = _empty(self.xp, x.shape, dout.dtype, _order(x))
        run = kernels.max_pool_grad[x.dtype.name]
        self.each_part(lambda lo, hi: run(dout.ctypes.data, arg.ctypes.data, dx.ctypes.data,
                                          h, w, lo, hi), x.size // (h * w), dx.nbytes)
        return dx

    def __repr__(self):
        return f"<{self.name} ops on {self.xp.__name__}, {self.threads} threads>"
