"""The GPU's operations: :class:`backends.ops.Ops` as fused CuPy kernels, and the graph step's GEMMs.

Why kernels of our own: the book's network at batch 100 is tiny, so a
GPU step costs what its launches cost (about 10 us of host time each in
CuPy), not what its arithmetic costs. Written with plain CuPy operations,
softmax with cross-entropy is a dozen launches and its gradient four; here
each is one. ReLU's output and mask come from one kernel instead of two,
the SGD update ``p -= lr * g`` from one instead of two, Adam's update of a
parameter from one instead of twelve, and dropout's generator from one
instead of some 25 (``kernels/uniform.cu``). The convolutional
passes (im2col, col2im, max pooling and its gradient) are one kernel each
too, from ``kernels/conv.cu``. The sources are files in
``backends/cuda/kernels/``, built by :mod:`backends.cuda.compiler`.

:meth:`CupyOps.matmul` calls cuBLAS through CuPy, except inside :meth:`CupyOps.recording`
(:mod:`backends.cuda.graph` opens it around the warm-up and the capture of a step):
CuPy refuses its cuBLAS calls during stream capture (cupy issue #6290), while cuBLAS
itself lets a capture record it when called on a handle of our own
(:mod:`backends.cuda.cublas`). There the setting ``graph_gemm`` (``XPNET_GRAPH_GEMM``)
says where a product goes: ``auto`` (the default) sends the large ones (the
convolutions') to that handle and the small ones to our block kernel, ``cublas`` every
one to the handle, ``own`` every one to our GEMM kernels (:mod:`backends.cuda.gemm`: the
block kernel, and a tile kernel for large products).

The setting ``fused`` (``XPNET_FUSED=0``, or ``backends.configured(fused=False)``)
turns the fused kernels off and routes every operation through the plain CuPy versions
of :class:`backends.ops.StridedOps`, for measuring what they gain. Every kernel is
compared with the reference by ``tests/backends/test_ops.py``.
"""

import contextlib

import cupy
import numpy

from backends.cuda import conv, cublas, gemm, uniform
from backends.cuda.compiler import KernelCache
from backends.cuda.sources import c_type
from backends.ops.strided import StridedOps, empty_in_order, memory_order

SOFTMAX_CE_THREADS = 256  # kernels/softmax_ce.cu: one block of these does the batch


class CupyOps(StridedOps):
    """Fused CuPy kernels for the operations of :class:`backends.ops.Ops`.

    When each fast path applies (elsewhere :class:`backends.ops.StridedOps`' CuPy code):
    with ``fused`` on, ``relu`` and its gradient, ``softmax_cross_entropy`` and its
    gradient (float scores, integer labels), ``sgd_update`` (a Python learning rate),
    Adam's step size (a 0-d float64 count) and update (float32 or float64), dropout's
    ``uniform`` (uint64 key and counter), and the convolutional passes (4-D float
    arrays; ``im2col`` into a C-ordered ``out`` if one is given) are one kernel each;
    inside :meth:`recording`, every ``matmul`` goes where ``graph_gemm`` says.

    ``handle``: a function giving ``(cuBLAS handle of ours, why not)`` for the current
    device (the backend's); ``kernels``: this object's :class:`KernelCache`.
    """

    name = "cupy-fused"
    device_arrays = True

    def __init__(self, fused=True, graph_gemm="auto", handle=None, backend=None):
        super().__init__(cupy, backend)
        self.fused = fused
        self.graph_gemm = graph_gemm
        self.kernels = KernelCache()
        self.graph_kernels = False  # inside recording(): products without CuPy's cuBLAS
        self._handle = handle or (lambda: (None, "no cuBLAS handle was given"))
        self._relu = cupy.ElementwiseKernel(
            "T x", "T y, bool keep", "keep = x > (T)0; y = (keep || x != x) ? x : (T)0;", "xpnet_relu")
        self._sgd = cupy.ElementwiseKernel("T g, T lr", "T p", "p -= lr * g", "xpnet_sgd")
        # Adam: the step size from the device's step counter, then each parameter's update
        # in one kernel (twelve launches a parameter as array code)
        self._adam_step_size = cupy.ElementwiseKernel(
            "float64 lr, float64 beta1, float64 beta2", "float64 t, float64 lr_t",
            "t += 1; lr_t = lr * sqrt(1.0 - pow(beta2, t)) / (1.0 - pow(beta1, t));",
            "xpnet_adam_step_size")
        self._adam = cupy.ElementwiseKernel(
            "T g, float64 lr_t, T c1, T c2", "T m, T v, T p",
            "m += c1 * (g - m); v += c2 * (g * g - v); p -= (T)lr_t * m / (sqrt(v) + (T)1e-7);",
            "xpnet_adam")

    def gemm(self, a, b, bias=None, kernel=None, tile=None):
        """``a @ b (+ bias)`` on the GEMM kernels of :mod:`backends.cuda.gemm`: no cuBLAS, so
        it can be captured. ``kernel`` ('block' or 'tiles') overrides the choice by size,
        ``tile`` the tile kernel's ``(rows, columns)`` a thread (one of ``gemm.TILES``)."""
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"gemm: shapes {tuple(a.shape)} and {tuple(b.shape)} do not "
                             f"multiply as matrices")
        if a.dtype != b.dtype or a.dtype.kind != "f":
            raise TypeError(f"gemm: needs two float arrays of one dtype, got {a.dtype} "
                            f"and {b.dtype}")
        m, k = a.shape
        n = b.shape[1]
        if bias is not None:
            if bias.shape != (n,) or bias.dtype != a.dtype:
                raise ValueError(f"gemm: bias must be ({n},) {a.dtype}, got "
                                 f"{tuple(bias.shape)} {bias.dtype}")
            bias = cupy.ascontiguousarray(bias)
        p = gemm.plan(m, n, k, kernel, tile)
        out = cupy.empty((m, n), dtype=a.dtype)
        if m == 0 or n == 0:
            return out
        t = c_type(a.dtype)
        compiled = self.kernels.get
        if p.kernel == "block":
            launch = compiled("gemm_block.cu", "xpnet_gemm", T=t, TM=gemm.BLOCK_TM,
                              KSPLIT=gemm.BLOCK_KSPLIT)
            item = a.itemsize
            launch(p.grid, p.block,
                   (a, b, bias if bias is not None else out, out,
                    numpy.int32(m), numpy.int32(n), numpy.int32(k),
                    numpy.int64(a.strides[0] // item), numpy.int64(a.strides[1] // item),
                    numpy.int64(b.strides[0] // item), numpy.int64(b.strides[1] // item),
                    numpy.int32(bias is not None)))
            return out
        tiles = compiled("gemm_tiles.cu", "xpnet_gemm_tiles", T=t, TM=p.tm, TN=p.tn)
        parts = out if p.slices == 1 else cupy.empty((p.slices, m, n), dtype=a.dtype)
        tiles(p.grid, p.block, gemm.tiles_args(p, a, b, bias, parts))
        if p.slices > 1:
            add = compiled("gemm_sum.cu", "xpnet_gemm_sum", T=t)
            threads = 256
            add((max(1, min(-(-m * n // threads), 1 << 16)),), (threads,),
                gemm.sum_args(parts, bias, out))
        return out

    @contextlib.contextmanager
    def recording(self, own_gemm=True):
        """Within the block (a CUDA graph's warm-up and capture), products go where
        ``graph_gemm`` says rather than to CuPy's cuBLAS, which a capture refuses;
        ``own_gemm=False`` leaves them on CuPy's (``scripts/graph_probe.py`` tries it)."""
        previous, self.graph_kernels = self.graph_kernels, own_gemm
        try:
            yield self
        finally:
            self.graph_kernels = previous

    def matmul(self, a, b, bias=None, out=None):
        if self.graph_kernels:
            if self._on_cublas(a, b):
                result = cublas.matmul(self._handle(), a, b, bias)
            else:
                result = self.gemm(a, b, bias)
            if out is None:
                return result
            out[...] = result
            return out
        return super().matmul(a, b, bias, out)

    def _on_cublas(self, a, b):
        """Whether the graph's product ``a @ b`` goes to cuBLAS (see ``graph_gemm``)."""
        if self.graph_gemm == "own" or a.dtype != b.dtype or a.dtype.kind != "f" \
                or a.dtype.itemsize not in (4, 8):
            return False
        if self.graph_gemm == "cublas":
            return True
        large = a.shape[0] * a.shape[1] * b.shape[1] >= gemm.LARGE_MACS
        return large and self._handle()[0] is not None

    def relu(self, x, mask=True):
        if not self.fused or not mask:
            return super().relu(x, mask)
        # Outputs in x's memory order (a convolution's channel-major layout), which
        # the next layer's kernels read in place; CuPy would make them C order.
        order = memory_order(x)
        return self._relu(x, empty_in_order(cupy, x.shape, x.dtype, order),
                          empty_in_order(cupy, x.shape, numpy.bool_, order))

    def relu_backward(self, dout, keep):
        if not self.fused:
            return super().relu_backward(dout, keep)
        return cupy.multiply(dout, keep, out=empty_in_order(cupy, dout.shape, dout.dtype, memory_order(dout)))

    def softmax_cross_entropy(self, x, t, rows):
        if not self.fused or x.dtype.kind != "f" or t.ndim != 1 or t.dtype.kind not in "iu":
            return super().softmax_cross_entropy(x, t, rows)
        x = cupy.ascontiguousarray(x)
        t = cupy.ascontiguousarray(t)
        n, c = x.shape
        y = cupy.empty_like(x)
        loss = cupy.empty((), dtype=x.dtype)
        launch = self.kernels.get("softmax_ce.cu", "xpnet_softmax_ce", T=c_type(x.dtype),
                                  L=c_type(t.dtype))
        launch((1,), (SOFTMAX_CE_THREADS,), (x, t, y, loss, numpy.int32(n), numpy.int32(c)))
        return loss, y, t

    def softmax_cross_entropy_grad(self, y, t, scale, rows):
        if not self.fused or not isinstance(scale, (int, float)) or t.ndim != 1 \
                or t.dtype.kind not in "iu":  # (t: the labels as they are, on a device)
            return super().softmax_cross_entropy_grad(y, t, scale, rows)
        n, c = y.shape
        dx = cupy.empty_like(y)
        launch = self.kernels.get("softmax_ce.cu", "xpnet_softmax_ce_grad", T=c_type(y.dtype),
                                  L=c_type(t.dtype))
        threads = 128
        launch(((n * c + threads - 1) // threads,), (threads,),
               (cupy.ascontiguousarray(y), cupy.ascontiguousarray(t), dx, numpy.int32(n),
                numpy.int32(c), y.dtype.type(scale)))
        return dx

    def _conv(self, name, arrays, index_dtype=numpy.int8, **sizes):
        """Launch one of ``kernels/conv.cu``'s kernels over ``arrays``."""
        launch = self.kernels.get("conv.cu", name, T=c_type(arrays[0].dtype),
                                  A=c_type(index_dtype))
        args, total = conv.launch_args(name, *arrays, **sizes)
        threads = 256
        launch((max(1, min((total + threads - 1) // threads, 1 << 16)),), (threads,), args)

    def _conv_ready(self, *arrays):
        return self.fused and all(a.ndim == 4 and a.dtype.kind == "f" for a in arrays)

    def im2col(self, x, fh, fw, stride, pad, out_h, out_w, out=None):
        if not self._conv_ready(x) or (out is not None and not out.flags.c_contiguous):
            return super().im2col(x, fh, fw, stride, pad, out_h, out_w, out)
        n, c, h, w = x.shape
        if out is None:
            out = cupy.empty((c * fh * fw, n * out_h * out_w), dtype=x.dtype)
        self._conv("xpnet_im2col", (x, out), n=n, c=c, h=h, w=w, fh=fh, fw=fw, stride=stride,
                   pad=pad, oh=out_h, ow=out_w)
        return out

    def col2im(self, dcol, x_shape, fh, fw, stride, pad, out_h, out_w):
        if not self.fused or dcol.dtype.kind != "f":
            return super().col2im(dcol, x_shape, fh, fw, stride, pad, out_h, out_w)
        n, c, h, w = x_shape
        img = empty_in_order(cupy, (n, c, h, w), dcol.dtype, (1, 0, 2, 3))  # channel-major
        self._conv("xpnet_col2im", (cupy.ascontiguousarray(dcol), img), n=n, c=c, h=h, w=w,
                   fh=fh, fw=fw, stride=stride, pad=pad, oh=out_h, ow=out_w)
        return img

    def max_pool(self, x, ph, pw, stride, pad, out_h, out_w):
        if not self._conv_ready(x):  # a stack (K, N, C, H, W) of a numerical gradient
            return super().max_pool(x, ph, pw, stride, pad, out_h, out_w)
        n, c, h, w = x.shape
        order = memory_order(x)
        out = empty_in_order(cupy, (n, c, out_h, out_w), x.dtype, order)
        index = numpy.int8 if ph * pw <= 127 else numpy.int32
        arg = empty_in_order(cupy, out.shape, index, order)
        self._conv("xpnet_max_pool", (x, out, arg), index, n=n, c=c, h=h, w=w, ph=ph, pw=pw,
                   stride=stride, pad=pad, oh=out_h, ow=out_w)
        return out, arg

    def max_pool_grad(self, dout, arg, x, ph, pw, stride, pad):
        if not self._conv_ready(dout, x):
            return super().max_pool_grad(dout, arg, x, ph, pw, stride, pad)
        n, c, h, w = x.shape
        dx = empty_in_order(cupy, x.shape, dout.dtype, memory_order(x))
        self._conv("xpnet_max_pool_grad", (dout, arg, dx), arg.dtype, n=n, c=c, h=h, w=w, ph=ph,
                   pw=pw, stride=stride, pad=pad, oh=dout.shape[2], ow=dout.shape[3])
        return dx

    def sgd_update(self, p, g, lr):
        if not self.fused or not isinstance(lr, (int, float)):
            return super().sgd_update(p, g, lr)
        self._sgd(g, p.dtype.type(lr), p)
        return p

    def uniform(self, key, counter, shape, first=0):
        if not self.fused or key.dtype != numpy.uint64 or counter.dtype != numpy.uint64:
            return super().uniform(key, counter, shape, first)
        out = cupy.empty(shape, dtype=numpy.float64)
        launch = self.kernels.get("uniform.cu", "xpnet_uniform")
        threads = 256
        launch((max(1, min(-(-out.size // threads), 1 << 16)),), (threads,),
               uniform.launch_args(cupy.ascontiguousarray(key),
                                          cupy.ascontiguousarray(counter), out, first))
        return out

    def adam_step_size(self, t, lr, beta1, beta2):
        if not self.fused or t.dtype != numpy.float64 or t.ndim != 0:
            return super().adam_step_size(t, lr, beta1, beta2)
        lr_t = cupy.empty((), dtype=numpy.float64)
        self._adam_step_size(float(lr), float(beta1), float(beta2), t, lr_t)
        return t, lr_t

    def adam_update(self, p, g, m, v, lr_t, beta1, beta2):
        if not self.fused or p.dtype.name not in ("float32", "float64") or \
                not isinstance(lr_t, cupy.ndarray):
            return super().adam_update(p, g, m, v, lr_t, beta1, beta2)
        self._adam(g, lr_t, p.dtype.type(1 - beta1), p.dtype.type(1 - beta2), m, v, p)
        return p, m, v
