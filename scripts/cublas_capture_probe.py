"""Whether cuBLAS, called directly, can be recorded in a CUDA graph where CuPy refuses it.

CuPy 14 refuses its own cuBLAS calls while a stream is captured (cupy issue #6290),
so xpnet's CUDA-graph step multiplies on GEMM kernels of its own, at 1.7-2.6x
cuBLAS's time on DeepConvNet's products (docs/performance.md). cuBLAS itself
allows capture when its handle is bound to the capturing stream and owns a
workspace set beforehand (``cublasSetWorkspace``), so no allocation happens
inside the capture. This probe asks the GPU, on a handle of its own made
through ``ctypes`` over the libcublas CuPy already loaded:

  1. whether CuPy still refuses ``a @ a`` during capture (the reason for our kernels);
  2. whether ``cublasSgemm`` / ``cublasDgemm`` on that handle capture, and whether the
     replayed graph gives CuPy's eager product;
  3. the GPU time of each DeepConvNet product (batch 100, Conv2 and Conv6: forward,
     dW and dcol) as CuPy's eager ``matmul``, xpnet's own kernel (``ops.gemm``) and the
     direct cuBLAS call replayed in a graph.

    python scripts/cublas_capture_probe.py

Run by ``scripts/gpu_check.sh``. What the GPU answers decides whether the graph step
should multiply through cuBLAS. :func:`gemm_args` (row-major operands to cuBLAS's
column-major arguments) is tested on the CPU in ``tests/scripts``.
"""

import ctypes
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

OP_N, OP_T = 0, 1  # cublasOperation_t


def gemm_args(a_shape, b_shape, trans_a=False, trans_b=False):
    """cuBLAS's ``(transa, transb, m, n, k, lda, ldb, ldc)`` for ``C = op(a) @ op(b)`` on
    C-contiguous (row-major) ``a`` and ``b``, C row-major.

    A row-major ``r x c`` matrix is the column-major ``c x r`` matrix of its transpose
    with leading dimension ``c``; so cuBLAS computes ``C^T = op(b)^T op(a)^T``, and
    ``b`` is passed as cuBLAS's A, ``a`` as its B.
    """
    m, k = (a_shape[1], a_shape[0]) if trans_a else a_shape
    k_b, n = (b_shape[1], b_shape[0]) if trans_b else b_shape
    if k != k_b:
        raise ValueError(f"gemm_args: op(a) {m}x{k} and op(b) {k_b}x{n} do not multiply")
    return (OP_T if trans_b else OP_N, OP_T if trans_a else OP_N, n, m, k,
            b_shape[1], a_shape[1], n)


def loaded_cublas():
    """The libcublas this process has loaded (CuPy's, after one product), by path."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "/libcublas.so" in path:
                return ctypes.CDLL(path)
    import ctypes.util
    found = ctypes.util.find_library("cublas")
    if found is None:
        raise OSError("libcublas is not loaded in this process and not on the loader's path")
    return ctypes.CDLL(found)


class Cublas:
    """A cuBLAS handle of our own, bound to one stream, with its own workspace."""

    def __init__(self, lib, stream, workspace):
        self.lib = lib
        self.handle = ctypes.c_void_p()
        self._check("cublasCreate_v2", lib.cublasCreate_v2(ctypes.byref(self.handle)))
        self._check("cublasSetStream_v2",
                    lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream.ptr)))
        self.workspace = workspace  # kept alive as long as the handle (and any graph)
        self._check("cublasSetWorkspace_v2",
                    lib.cublasSetWorkspace_v2(self.handle, ctypes.c_void_p(workspace.data.ptr),
                                              ctypes.c_size_t(workspace.nbytes)))

    @staticmethod
    def _check(name, status):
        if status != 0:
            raise RuntimeError(f"{name} returned cuBLAS status {status}")

    def gemm(self, a, b, out, trans_a=False, trans_b=False):
        """``out = op(a) @ op(b)`` for C-contiguous float32 or float64 CuPy arrays."""
        ta, tb, m, n, k, lda, ldb, ldc = gemm_args(a.shape, b.shape, trans_a, trans_b)
        if a.dtype.itemsize == 4:
            scalar, call = ctypes.c_float, self.lib.cublasSgemm_v2
        else:
            scalar, call = ctypes.c_double, self.lib.cublasDgemm_v2
        one, zero = scalar(1.0), scalar(0.0)
        self._check("cublas gemm", call(
            self.handle, ta, tb, m, n, k, ctypes.byref(one), ctypes.c_void_p(b.data.ptr),
            lda, ctypes.c_void_p(a.data.ptr), ldb, ctypes.byref(zero),
            ctypes.c_void_p(out.data.ptr), ldc))

    def close(self):
        if self.handle:
            self.lib.cublasDestroy_v2(self.handle)
            self.handle = ctypes.c_void_p()


def products(cupy, rng):
    """DeepConvNet's convolution products at batch 100: (name, a, b, trans_a, trans_b)."""
    def arr(*shape):
        return cupy.asarray(rng.standard_normal(shape, dtype="float32"))
    out = []
    for name, fn, kk, cols in (("Conv2", 16, 144, 78400), ("Conv6", 64, 576, 4900)):
        w, col, d = arr(fn, kk), arr(kk, cols), arr(fn, cols)
        out += [(f"{name} forward W_col col", w, col, False, False),
                (f"{name} dW = d col^T", d, col, False, True),
                (f"{name} dcol = W_col^T d", w, d, True, False)]
    return out


def captured(stream, calls):
    """The CUDA graph of ``calls()`` recorded on ``stream``; the first error raised, in
    the calls or at the capture's end, is the one that propagates."""
    with stream:
        stream.begin_capture()
        try:
            calls()
        except Exception:
            try:
                stream.end_capture()
            except Exception:
                pass
            raise
        return stream.end_capture()


def main():
    import cupy
    import numpy
    from cupyx.profiler import benchmark

    from backends import ops_for

    a = cupy.ones((64, 64), dtype=cupy.float32)
    a @ a  # CuPy loads libcublas here
    s = cupy.cuda.Stream(non_blocking=True)
    try:
        captured(s, lambda: a @ a)
        print("CuPy", cupy.__version__, "captures its own cuBLAS calls")
    except Exception as e:
        print("CuPy", cupy.__version__, "refuses its cuBLAS calls during capture:",
              type(e).__name__, e)

    try:
        blas = Cublas(loaded_cublas(), s, cupy.empty(32 << 20, dtype=cupy.uint8))
    except Exception as e:
        print(f"no cuBLAS handle of our own: {type(e).__name__}: {e}")
        raise SystemExit(1)
    rng = numpy.random.default_rng(0)
    repeats = 20
    print()
    print("| product | CuPy eager us | ours (ops.gemm) us | cuBLAS direct, in a graph, us "
          "| max rel. diff vs CuPy |")
    print("|---|---:|---:|---:|---:|")
    failed = False
    try:
        for name, x, y, ta, tb in products(cupy, rng):
            ox, oy = (x.T if ta else x), (y.T if tb else y)
            want = ox @ oy
            eager = benchmark(lambda: ox @ oy, n_repeat=repeats, n_warmup=3).gpu_times.mean()
            ops = ops_for(x)
            ours = benchmark(lambda: ops.gemm(ox, oy), n_repeat=repeats,
                             n_warmup=3).gpu_times.mean()
            got = cupy.empty_like(want)
            try:
                graph = captured(s, lambda: [blas.gemm(x, y, got, ta, tb)
                                             for _ in range(repeats)])
                graph.launch(s)
                s.synchronize()
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                start.record(s)
                for _ in range(5):
                    graph.launch(s)
                end.record(s)
                end.synchronize()
                direct = f"{cupy.cuda.get_elapsed_time(start, end) * 1e3 / (5 * repeats):.1f}"
                diff = f"{float(cupy.abs(got - want).max() / cupy.abs(want).max()):.1e}"
            except Exception as e:  # the answer this probe is for: say it, go on
                failed = True
                direct, diff = f"failed: {type(e).__name__}: {e}", "-"
            print(f"| {name} | {eager * 1e6:.1f} | {ours * 1e6:.1f} | {direct} | {diff} |")
    finally:
        blas.close()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
