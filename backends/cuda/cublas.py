"""cuBLAS called directly, on a handle of our own: the graph step's products, where it captures.

CuPy refuses its own cuBLAS calls while a stream is captured (cupy issue #6290), which is
why the CUDA-graph step first had only GEMM kernels of ours (:mod:`backends.cuda.gemm`).
cuBLAS itself can be recorded when its handle is bound to the capturing stream and owns
a workspace set beforehand, so that nothing is allocated inside the capture
(docs/performance.md has what this measured on a GPU). ``XPNET_GRAPH_GEMM`` chooses:
``auto`` (the default) multiplies the products our tile kernel would take
(:data:`backends.cuda.gemm.LARGE_MACS` and up) on cuBLAS and keeps our block kernel for
the small ones (the book's TwoLayerNet); ``cublas`` every product; ``own`` none (our
kernels only). Where no handle can be made (no libcublas, or one without
``cublasSetWorkspace``), ``auto`` keeps our kernels. The handles are the process's, one a
device, held by :meth:`backends.cuda.backend.CupyBackend.cublas_handle`.

cuBLAS is column-major and xpnet's arrays row-major: a row-major ``r x c`` matrix is the
column-major ``c x r`` matrix of its transpose, so ``C = a @ b`` is computed as
``C^T = b^T a^T``, with ``b`` as cuBLAS's A. :func:`layout` and :func:`gemm_args` import no
CuPy; ``tests/backends/cuda/test_cublas.py`` checks them on the CPU against cuBLAS's
definition of gemm carried out in NumPy.
"""

import ctypes
import ctypes.util

OP_N, OP_T = 0, 1  # cublasOperation_t
WORKSPACE_BYTES = 32 << 20


def layout(shape, strides, itemsize):
    """``(transposed, ld)`` of a 2-D array as cuBLAS reads it in place: element ``[i, j]`` at
    ``i * ld + j`` (``transposed`` False) or at ``j * ld + i`` (True); None where neither
    holds (the array must be copied first)."""
    rows, cols = shape
    s0, s1 = (s // itemsize for s in strides)
    if s1 == 1 and s0 >= max(1, cols):
        return False, s0
    if s0 == 1 and s1 >= max(1, rows):
        return True, s1
    return None


def gemm_args(m, n, k, a_layout, b_layout):
    """cuBLAS's ``(transa, transb, m, n, k, lda, ldb, ldc)`` for the row-major ``C (m x n)
    = a (m x k) @ b (k x n)``, ``a`` and ``b`` given by their :func:`layout`, C contiguous;
    ``b`` is passed as cuBLAS's A and ``a`` as its B."""
    (trans_a, ld_a), (trans_b, ld_b) = a_layout, b_layout
    return (OP_T if trans_b else OP_N, OP_T if trans_a else OP_N, n, m, k, ld_b, ld_a, n)


def _check(name, status):
    if status != 0:
        raise RuntimeError(f"{name} returned cuBLAS status {status}")


def loaded_library():
    """The libcublas CuPy uses (loaded by asking CuPy for its handle), opened by path."""
    import cupy
    cupy.cuda.device.get_cublas_handle()  # CuPy loads libcublas on its first handle
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/libcublas.so" in path:
                    return ctypes.CDLL(path)
    except OSError:  # no /proc: the loader's search path
        pass
    found = ctypes.util.find_library("cublas")
    if found is None:
        raise OSError("libcublas is not loaded in this process and not on the loader's path")
    return ctypes.CDLL(found)


class Handle:
    """A cuBLAS handle of our own on the current device, with a workspace of its own from
    CuPy's default pool (never a graph's pool, which goes with its graph)."""

    def __init__(self, lib=None):
        self.lib = lib or loaded_library()
        for name in ("cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasSgemm_v2",
                     "cublasDgemm_v2", "cublasDestroy_v2"):
            getattr(self.lib, name)  # AttributeError now, not halfway through a capture
        import cupy
        self.handle = ctypes.c_void_p()
        _check("cublasCreate_v2", self.lib.cublasCreate_v2(ctypes.byref(self.handle)))
        self.workspace = cupy.get_default_memory_pool().malloc(WORKSPACE_BYTES)

    def gemm(self, a, b, out, beta=0.0):
        """``out = a @ b + beta * out`` on the current stream: ``out`` a C-contiguous ``(m, n)``
        array, ``a`` and ``b`` float32 or float64 2-D arrays cuBLAS reads in place."""
        import cupy
        m, k = a.shape
        n = b.shape[1]
        a_layout = layout(a.shape, a.strides, a.itemsize)
        b_layout = layout(b.shape, b.strides, b.itemsize)
        stream = cupy.cuda.get_current_stream()
        # binding a stream resets the workspace to cuBLAS's own pool: set ours after it
        _check("cublasSetStream_v2", self.lib.cublasSetStream_v2(
            self.handle, ctypes.c_void_p(stream.ptr)))
        _check("cublasSetWorkspace_v2", self.lib.cublasSetWorkspace_v2(
            self.handle, ctypes.c_void_p(self.workspace.ptr), ctypes.c_size_t(WORKSPACE_BYTES)))
        ta, tb, cm, cn, ck, lda, ldb, ldc = gemm_args(m, n, k, a_layout, b_layout)
        scalar, call = ((ctypes.c_float, self.lib.cublasSgemm_v2) if a.dtype.itemsize == 4
                        else (ctypes.c_double, self.lib.cublasDgemm_v2))
        one, scale = scalar(1.0), scalar(beta)
        _check("cublas gemm", call(
            self.handle, ta, tb, cm, cn, ck, ctypes.byref(one), ctypes.c_void_p(b.data.ptr),
            lda, ctypes.c_void_p(a.data.ptr), ldb, ctypes.byref(scale),
            ctypes.c_void_p(out.data.ptr), ldc))
        return out

    def close(self):
        if self.handle:
            self.lib.cublasDestroy_v2(self.handle)
            self.handle = ctypes.c_void_p()


def matmul(handle_or_reason, a, b, bias=None):
    """``a @ b (+ bias)`` through cuBLAS on a handle of ours (``handle_or_reason``: the
    ``(handle, why)`` the backend holds for this device): a fresh C-contiguous result,
    operands copied only where cuBLAS cannot read them in place."""
    import cupy
    handle, why = handle_or_reason
    if handle is None:
        raise RuntimeError(f"no cuBLAS handle of xpnet's own on this device: {why}")
    if layout(a.shape, a.strides, a.itemsize) is None:
        a = cupy.ascontiguousarray(a)
    if layout(b.shape, b.strides, b.itemsize) is None:
        b = cupy.ascontiguousarray(b)
    out = cupy.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    if bias is not None:
        out[...] = bias
    if out.size == 0:
        return out
    if a.shape[1] == 0:  # no products to add: cuBLAS's leading dimensions would be 0
        if bias is None:
            out.fill(0)
        return out
    return handle.gemm(a, b, out, beta=0.0 if bias is None else 1.0)
