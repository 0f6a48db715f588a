"""scripts/cublas_capture_probe.py: row-major operands to cuBLAS's column-major call,
checked against cuBLAS's definition of gemm carried out in NumPy (the GPU half runs
in the GPU check)."""

import numpy as np
import pytest

from scripts.cublas_capture_probe import OP_N, gemm_args


def column_major(buffer, rows, cols, ld):
    """The ``rows x cols`` column-major matrix with leading dimension ``ld`` in ``buffer``,
    refused where cuBLAS would read past it."""
    assert ld >= rows, f"leading dimension {ld} below the {rows} rows"
    assert (cols - 1) * ld + rows <= buffer.size, "reads past the buffer"
    return np.lib.stride_tricks.as_strided(buffer, (rows, cols),
                                           (buffer.itemsize, ld * buffer.itemsize))


def cublas_gemm(transa, transb, m, n, k, A, lda, B, ldb, ldc):
    """cuBLAS's C = op(A) op(B) (alpha 1, beta 0) on flat column-major buffers."""
    op_a = column_major(A, m, k, lda) if transa == OP_N else column_major(A, k, m, lda).T
    op_b = column_major(B, k, n, ldb) if transb == OP_N else column_major(B, n, k, ldb).T
    C = np.zeros(ldc * n)
    column_major(C, m, n, ldc)[...] = op_a @ op_b
    return C


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m, k, n", [(16, 144, 300), (3, 1, 5), (7, 9, 1), (64, 576, 49)])
def test_row_major_products_map_to_the_column_major_call(m, k, n, trans_a, trans_b):
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    ta, tb, cm, cn, ck, lda, ldb, ldc = gemm_args(a.shape, b.shape, trans_a, trans_b)
    # b is cuBLAS's A and a its B; C comes back as C^T column-major, i.e. C row-major
    got = cublas_gemm(ta, tb, cm, cn, ck, b.ravel(), lda, a.ravel(), ldb, ldc)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    np.testing.assert_allclose(got.reshape(m, n), want, rtol=1e-12, atol=1e-12)


def test_shapes_that_do_not_multiply_are_refused():
    with pytest.raises(ValueError, match=r"op\(a\) 2x3 and op\(b\) 4x5 do not multiply"):
        gemm_args((2, 3), (4, 5))
