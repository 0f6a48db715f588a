"""The CUDA-graph step's matrix products: GEMM kernels of our own, and how each product is cut.

CuPy refuses cuBLAS while a stream is being captured (cupy issue #6290),
so a recorded step multiplies on these kernels. Two shapes of product
need two kernels:

* :data:`BLOCK_SOURCE` for the fully connected nets' small products (at
  most 100 x 784 x 50): a block is 32 columns by ``TM`` rows of C, its 8
  warps split K and add their partial sums in shared memory. The GPU
  reports measured it against cuBLAS on those shapes.
* :data:`TILES_SOURCE` + :data:`SUM_SOURCE` for the convolutions' large
  ones, whose K runs to N * out_h * out_w (78,400 for DeepConvNet's dW) or
  whose C has 78,400 columns. Each thread accumulates a ``TM x TN`` tile of
  C in registers over one slice of K; ``plan`` picks enough slices for the
  GPU to have some 65,000 threads at work, and a second kernel adds the
  slices' partial products in slice order. No atomics: the same sums in the
  same order every run, as cuBLAS's result would not promise.

This module does not import CuPy: :func:`plan` and :func:`tiles_args` give
shapes and NumPy scalars, which :meth:`backends.cuda_ops.CupyOps.gemm`
launches and ``tests/test_gemm_kernels.py`` runs through the same source
compiled for the CPU, block by block and thread by thread (the tile kernel
shares nothing between threads, so that is exact).
"""

import math
from dataclasses import dataclass

import numpy

# A block: 32 columns x BLOCK_TM rows of C; BLOCK_KSPLIT warps split K.
BLOCK_TM = 4
BLOCK_KSPLIT = 8
BLOCK_SOURCE = r'''
extern "C" __global__ void xpnet_gemm(const T* A, const T* B, const T* bias, T* C,
                                      int M, int N, int K,
                                      long long sa0, long long sa1,
                                      long long sb0, long long sb1, int has_bias)
{
    __shared__ T part[KSPLIT][TM][32];
    const int j = blockIdx.x * 32 + threadIdx.x;
    const int i0 = blockIdx.y * TM;
    const int rows = min(TM, M - i0);
    T acc[TM];
#pragma unroll
    for (int r = 0; r < TM; ++r) acc[r] = 0;
    if (j < N) {
        const T* a = A + i0 * sa0;
        for (int k = threadIdx.y; k < K; k += KSPLIT) {
            const T b = B[k * sb0 + j * sb1];
#pragma unroll
            for (int r = 0; r < TM; ++r)
                if (r < rows) acc[r] += a[r * sa0 + k * sa1] * b;
        }
    }
#pragma unroll
    for (int r = 0; r < TM; ++r) part[threadIdx.y][r][threadIdx.x] = acc[r];
    __syncthreads();
    if (threadIdx.y < rows && j < N) {
        const int r = threadIdx.y;
        T s = 0;
#pragma unroll
        for (int w = 0; w < KSPLIT; ++w) s += part[w][r][threadIdx.x];
        if (has_bias) s += bias[j];
        C[(long long)(i0 + r) * N + j] = s;
    }
}
'''

# Products of at least this many multiply-adds go to the tile kernel: the book's
# fully connected nets (3.9 M at most) stay on the block kernel.
LARGE_MACS = 1 << 22
TILE = 4  # TM = TN: a 4 x 4 tile of C per thread, 16 accumulators
# Other tiles a plan may ask for (rows x columns of C a thread): more multiply-adds per
# load, fewer threads. Not yet measured on a GPU against 4 x 4: scripts/graph_probe.py
# times each on DeepConvNet's products, to choose from.
TILES = ((4, 4), (8, 4), (4, 8), (8, 8))
THREADS = 256
TARGET_THREADS = 1 << 16  # what the slices of K should give the GPU to run
MIN_SLICE = 64  # fewer multiply-adds a thread than this are not worth a slice

TILES_SOURCE = r'''
#define XPNET_MIN(a, b) ((a) < (b) ? (a) : (b))
// C[M, N] = A[M, K] B[K, N] (+ bias[N]), A and B with any element strides. Thread
// (x, y) of the grid accumulates the TM x TN tile of C from row y * TM and column
// x * TN over the slice k in [z * kc, (z + 1) * kc) of block z, in k order, and writes
// it into out + z * M * N (row-major). Tiles at the edges read the last row or column
// again for the rows and columns they do not store, so every load is in bounds.
extern "C" __global__ void xpnet_gemm_tiles(const T* A, const T* B, const T* bias, T* out,
                                            int M, int N, int K, int kc,
                                            long long sa0, long long sa1,
                                            long long sb0, long long sb1, int has_bias)
{
    const int j0 = (blockIdx.x * blockDim.x + threadIdx.x) * TN;
    const int i0 = (blockIdx.y * blockDim.y + threadIdx.y) * TM;
    if (i0 >= M || j0 >= N) return;
    const long long k0 = (long long)blockIdx.z * kc;
    const long long k1 = XPNET_MIN((long long)K, k0 + kc);
    const T* a[TM];
    const T* b[TN];
    T acc[TM][TN];
#pragma unroll
    for (int r = 0; r < TM; ++r) a[r] = A + (long long)XPNET_MIN(i0 + r, M - 1) * sa0;
#pragma unroll
    for (int c = 0; c < TN; ++c) b[c] = B + (long long)XPNET_MIN(j0 + c, N - 1) * sb1;
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
        for (int c = 0; c < TN; ++c) acc[r][c] = 0;
    for (long long k = k0; k < k1; ++k) {
        T av[TM], bv[TN];
#pragma unroll
        for (int r = 0; r < TM; ++r) av[r] = a[r][k * sa1];
#pragma unroll
        for (int c = 0; c < TN; ++c) bv[c] = b[c][k * sb0];
#pragma unroll
        for (int r = 0; r < TM; ++r)
#pragma unroll
            for (int c = 0; c < TN; ++c) acc[r][c] += av[r] * bv[c];
    }
    T* dst = out + (long long)blockIdx.z * M * N;
    const int rows = XPNET_MIN(TM, M - i0), cols = XPNET_MIN(TN, N - j0);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c)
            dst[(long long)(i0 + r) * N + j0 + c] = acc[r][c] + (has_bias ? bias[j0 + c] : (T)0);
}
'''

SUM_SOURCE = r'''
// C[i] = parts[0][i] + parts[1][i] + ... (+ bias[i % n]), the slices in order.
extern "C" __global__ void xpnet_gemm_sum(const T* parts, const T* bias, T* C, int slices,
                                          long long mn, int n, int has_bias)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < mn;
         i += (long long)blockDim.x * gridDim.x) {
        T s = parts[i];
        for (int z = 1; z < slices; ++z) s += parts[(long long)z * mn + i];
        if (has_bias) s += bias[i % n];
        C[i] = s;
    }
}
'''


@dataclass(frozen=True)
class Plan:
    """How one ``(M, K) @ (K, N)`` product is launched."""
    kernel: str  # 'block' or 'tiles'
    grid: tuple
    block: tuple
    slices: int = 1  # K cut into this many slices (tiles only); > 1 adds the sum kernel
    kc: int = 0  # multiply-adds per thread and slice
    tm: int = TILE  # the tile of C a thread computes (tiles only): rows
    tn: int = TILE  # and columns


def _pow2_at_least(n):
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def plan(m, n, k, kernel=None, tile=None):
    """The :class:`Plan` for ``C[m, n] = A[m, k] B[k, n]``: the block kernel for small
    products, the tile kernel from :data:`LARGE_MACS` multiply-adds (``kernel`` forces one);
    ``tile``: the tile kernel's ``(rows, columns)`` a thread, one of :data:`TILES`."""
    tm, tn = (TILE, TILE) if tile is None else tuple(tile)
    if (tm, tn) not in TILES:
        raise ValueError(f"gemm: tile={tile!r}; expected one of {', '.join(map(str, TILES))}")
    if kernel is None:
        kernel = "tiles" if m * n * k >= LARGE_MACS else "block"
    if kernel == "block":
        return Plan("block", ((n + 31) // 32, (m + BLOCK_TM - 1) // BLOCK_TM, 1),
                    (32, BLOCK_KSPLIT, 1))
    if kernel != "tiles":
        raise ValueError(f"gemm: kernel={kernel!r}; expected 'block' or 'tiles'")
    col_tiles, row_tiles = -(-n // tn), -(-m // tm)
    bx = min(32, _pow2_at_least(col_tiles))
    by = min(THREADS // bx, _pow2_at_least(row_tiles))
    grid_x, grid_y = -(-col_tiles // bx), -(-row_tiles // by)
    tiles = max(1, col_tiles * row_tiles)  # an empty C still gets a plan
    slices = max(1, min(-(-TARGET_THREADS // tiles), -(-k // MIN_SLICE)))
    kc = -(-k // slices) if k else 0
    slices = -(-k // kc) if k else 1  # no empty slice at the end
    if grid_y > 65535 or slices > 65535:
        raise ValueError(f"gemm: a ({m}, {k}) @ ({k}, {n}) product is past the tile kernel's "
                         f"grid ({grid_y} row blocks, {slices} slices; at most 65535 each)")
    return Plan("tiles", (grid_x, grid_y, slices), (bx, by, 1), slices, kc, tm, tn)


def element_strides(a):
    """``a``'s two strides in elements, as the kernels take them."""
    return tuple(numpy.int64(s // a.itemsize) for s in a.strides)


def tiles_args(p, a, b, bias, out):
    """The tile kernel's arguments for plan ``p``: ``out`` is C itself (one slice) or
    the ``(slices, M, N)`` partial products; the bias is added here only with one slice."""
    m, k = a.shape
    i32 = numpy.int32
    with_bias = bias is not None and p.slices == 1
    return ((a, b, bias if with_bias else out, out, i32(m), i32(b.shape[1]), i32(k), i32(p.kc))
            + element_strides(a) + element_strides(b) + (i32(with_bias),))


def sum_args(parts, bias, out):
    """The sum kernel's arguments: ``parts`` (slices, M, N) into ``out`` (M, N)."""
    slices, m, n = parts.shape
    return (parts, bias if bias is not None else out, out, numpy.int32(slices),
            numpy.int64(m * n), numpy.int32(n), numpy.int32(bias is not None))
