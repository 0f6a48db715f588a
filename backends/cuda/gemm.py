"""The CUDA-graph step's matrix products: how each is cut for the GEMM kernels of ours.

CuPy refuses cuBLAS while a stream is being captured (cupy issue #6290),
so a recorded step multiplies on these kernels. Two shapes of product
need two kernels:

* ``kernels/gemm_block.cu`` for the fully connected nets' small products (at
  most 100 x 784 x 50): a block is 32 columns by ``TM`` rows of C, its 8
  warps split K and add their partial sums in shared memory. The GPU
  reports measured it against cuBLAS on those shapes.
* ``kernels/gemm_tiles.cu`` + ``gemm_sum.cu`` for the convolutions' large
  ones, whose K runs to N * out_h * out_w (78,400 for DeepConvNet's dW) or
  whose C has 78,400 columns. Each thread accumulates a ``TM x TN`` tile of
  C in registers over one slice of K; ``plan`` picks enough slices for the
  GPU to have some 65,000 threads at work, and a second kernel adds the
  slices' partial products in slice order. No atomics: the same sums in the
  same order every run, as cuBLAS's result would not promise.

This module does not import CuPy: :func:`plan` and :func:`tiles_args` give
shapes and NumPy scalars, which :meth:`backends.cuda.ops.CupyOps.gemm`
launches and ``tests/backends/cuda/test_gemm.py`` runs through the same source
compiled for the CPU, block by block and thread by thread (the tile kernel
shares nothing between threads, so that is exact).
"""

import math
from dataclasses import dataclass

import numpy

from backends.cuda.sources import element_strides

# A block: 32 columns x BLOCK_TM rows of C; BLOCK_KSPLIT warps split K.
BLOCK_TM = 4
BLOCK_KSPLIT = 8

# Products of at least this many multiply-adds go to the tile kernel: the book's
# fully connected nets (3.9 M at most) stay on the block kernel.
LARGE_MACS = 1 << 22
TILE = 4  # TM = TN: a 4 x 4 tile of C per thread, 16 accumulators
# Other tiles a plan may ask for (rows x columns of C a thread): more multiply-adds per
# load, fewer threads. scripts/graph_probe.py times each on DeepConvNet's products
# (docs/performance.md lists what still waits for a GPU run).
TILES = ((4, 4), (8, 4), (4, 8), (8, 8))
THREADS = 256
TARGET_THREADS = 1 << 16  # what the slices of K should give the GPU to run
MIN_SLICE = 64  # fewer multiply-adds a thread than this are not worth a slice


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
