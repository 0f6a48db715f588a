"""backends/cuda/cublas.py: row-major arrays, strided views among them, handed to cuBLAS's
column-major gemm; checked on the CPU against cuBLAS's definition of gemm carried out in
NumPy, and on a GPU (CuPy) recorded in a CUDA graph against CuPy's own product."""

import numpy as np
import pytest

import backends
from backends import ops_for
from backends.cuda.cublas import OP_N, gemm_args, layout
from backends.settings import Settings


def column_major(buffer, offset, rows, cols, ld):
    """The ``rows x cols`` column-major matrix with leading dimension ``ld`` from element
    ``offset`` of ``buffer``; refused where cuBLAS would refuse ``ld`` or read past it."""
    assert ld >= max(1, rows), f"leading dimension {ld} below the {rows} rows"
    assert offset + (cols - 1) * ld + rows <= buffer.size, "reads past the buffer"
    return np.lib.stride_tricks.as_strided(buffer[offset:], (rows, cols),
                                           (buffer.itemsize, ld * buffer.itemsize))


def cublas_gemm(transa, transb, m, n, k, A, lda, B, ldb, ldc):
    """cuBLAS's ``C = op(A) op(B)`` (alpha 1, beta 0); A and B as ``(buffer, offset)``."""
    op_a = column_major(*A, m, k, lda) if transa == OP_N else column_major(*A, k, m, lda).T
    op_b = column_major(*B, k, n, ldb) if transb == OP_N else column_major(*B, n, k, ldb).T
    C = np.zeros(ldc * n)
    column_major(C, 0, m, n, ldc)[...] = op_a @ op_b
    return C


def view(rng, rows, cols, kind):
    """A ``rows x cols`` float64 view of a larger buffer, as the layers hand them over:
    C order, a transposed C-order array (``col.T``), or rows cut from wider ones."""
    if kind == "C":
        whole = rng.standard_normal((rows, cols))
    elif kind == "T":
        whole = rng.standard_normal((cols, rows)).T
    else:  # "rows": every row a slice of a longer one
        whole = rng.standard_normal((rows, cols + 3))[:, 1:cols + 1]
    base = whole.base if whole.base is not None else whole
    offset = (whole.__array_interface__["data"][0] - base.__array_interface__["data"][0]) \
        // whole.itemsize
    return whole, (base.ravel(), offset)


@pytest.mark.parametrize("a_kind", ["C", "T", "rows"])
@pytest.mark.parametrize("b_kind", ["C", "T", "rows"])
@pytest.mark.parametrize("m, k, n", [(16, 144, 300), (3, 1, 5), (7, 9, 1), (1, 4, 6),
                                     (64, 576, 49)])
def test_row_major_views_map_to_the_column_major_call(m, k, n, a_kind, b_kind):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, a_buffer = view(rng, m, k, a_kind)
    b, b_buffer = view(rng, k, n, b_kind)
    a_layout = layout(a.shape, a.strides, a.itemsize)
    b_layout = layout(b.shape, b.strides, b.itemsize)
    assert a_layout is not None and b_layout is not None
    ta, tb, cm, cn, ck, lda, ldb, ldc = gemm_args(m, n, k, a_layout, b_layout)
    # b is cuBLAS's A and a its B; C comes back as C^T column-major: C row-major
    got = cublas_gemm(ta, tb, cm, cn, ck, b_buffer, lda, a_buffer, ldb, ldc)
    np.testing.assert_allclose(got.reshape(m, n), a @ b, rtol=1e-12, atol=1e-12)


def test_views_cublas_cannot_read_in_place_are_found():
    x = np.zeros((4, 6))
    assert layout(x.shape, x.strides, x.itemsize) == (False, 6)
    assert layout(x.T.shape, x.T.strides, x.itemsize) == (True, 6)
    assert layout(x[:, ::2].shape, x[:, ::2].strides, x.itemsize) is None  # no unit stride
    assert layout(x[::2].shape, x[::2].strides, x.itemsize) == (False, 12)


def test_the_mode_is_checked_by_name():
    def mode(value):
        return Settings.read({} if value is None else {"XPNET_GRAPH_GEMM": value}).graph_gemm
    assert mode(None) == "auto" and mode(" cuBLAS ") == "cublas"
    assert mode("own") == "own"
    with pytest.raises(ValueError, match=r"XPNET_GRAPH_GEMM='blas'; expected 'auto' .*, 'own' "
                                         r".* or 'cublas'"):
        mode("blas")


needs_gpu = pytest.mark.skipif("cupy" not in backends.available(),
                               reason="cupy backend not usable here: needs a GPU")


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m, k, n, kinds", [(16, 144, 78400, "nn"), (144, 78400, 16, "nt"),
                                            (144, 16, 78400, "tn"), (100, 50, 10, "nn"),
                                            (3, 0, 4, "nn")])
def test_products_recorded_in_a_cuda_graph_equal_cupys(on_cupy, monkeypatch, m, k, n, kinds,
                                                       dtype):
    """DeepConvNet's Conv2 products (forward, dW over every window, the columns' gradient),
    the book's Affine with its bias, and an empty K: recorded with ``graph_gemm='cublas'``,
    replayed, and compared with CuPy's eager product."""
    import cupy
    from backends.cuda import graph
    rng = np.random.default_rng(k)
    a = cupy.asarray(rng.standard_normal((m, k) if kinds[0] == "n" else (k, m)), dtype=dtype)
    b = cupy.asarray(rng.standard_normal((k, n) if kinds[1] == "n" else (n, k)), dtype=dtype)
    a, b = (a if kinds[0] == "n" else a.T), (b if kinds[1] == "n" else b.T)
    bias = cupy.asarray(rng.standard_normal(n), dtype=dtype) if n == 10 else None
    made = {}
    with backends.configured(graph_gemm="cublas"):
        ops = ops_for(a)

        def body():
            made["out"] = ops.matmul(a, b, bias)
        recorded = graph.capture(body, ops)
    made["out"].fill(float("nan"))  # the replay must write every element
    recorded.launch()
    graph.synchronize()
    want = a @ b + (0 if bias is None else bias)
    tol = 1e-4 if dtype == "float32" else 1e-12
    scale = float((abs(a) @ abs(b)).max()) + 1
    assert float(abs(made["out"] - want).max()) <= tol * scale


def test_a_library_without_a_function_the_graph_needs_is_refused_at_once():
    """An older libcublas (no cublasSetWorkspace) fails when the handle is made, so 'auto'
    keeps xpnet's kernels, rather than in the middle of recording a step."""
    from backends.cuda.cublas import Handle

    class Old:
        cublasSetStream_v2 = cublasSgemm_v2 = cublasDgemm_v2 = cublasDestroy_v2 = None
    with pytest.raises(AttributeError, match="cublasSetWorkspace_v2"):
        Handle(Old())
