"""backends/cuda/kernels/gemm_tiles.cu on the CPU: compiled as C++, against NumPy.

The tile kernel's threads share nothing (no shared memory, no barrier), so
running its grid block by block and thread by thread on the host is exactly
what the GPU computes, up to fused multiply-adds. Here the source CuPy
compiles is built with the C++ compiler, launched with :func:`plan`'s grid
and :func:`tiles_args`' arguments (as CupyOps passes them), and the slices
added by the sum kernel, for the convolutions' shapes and the edges (sizes
not multiples of the tile, one slice and many, transposed operands). On a
GPU, tests/backends/test_ops.py runs the kernels themselves.
"""

import ctypes

import numpy as np

import backends
import pytest

from backends.cuda import gemm as gemm_kernels
from backends.cuda.sources import source
from tests.backends.cuda.cpp_build import C_TYPES, build as build_library, c_args, needs_compiler

pytestmark = needs_compiler

# The CUDA names, settable, and a driver that walks the grid as the GPU would.
PRELUDE = r'''
struct xpnet_dim3 { unsigned x, y, z; };
static xpnet_dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
'''
DRIVER = r'''
extern "C" void launch_tiles(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                             const T* A, const T* B, const T* bias, T* out, int M, int N, int K,
                             int kc, long long sa0, long long sa1, long long sb0, long long sb1,
                             int has_bias)
{
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, 1};
    for (blockIdx.z = 0; blockIdx.z < gz; ++blockIdx.z)
    for (blockIdx.y = 0; blockIdx.y < gy; ++blockIdx.y)
    for (blockIdx.x = 0; blockIdx.x < gx; ++blockIdx.x)
    for (threadIdx.y = 0; threadIdx.y < by; ++threadIdx.y)
    for (threadIdx.x = 0; threadIdx.x < bx; ++threadIdx.x)
        xpnet_gemm_tiles(A, B, bias, out, M, N, K, kc, sa0, sa1, sb0, sb1, has_bias);
}

extern "C" void launch_sum(const T* parts, const T* bias, T* C, int slices, long long mn, int n,
                           int has_bias)
{
    gridDim = {1, 1, 1};
    blockDim = {1, 1, 1};
    blockIdx = {0, 0, 0};
    threadIdx = {0, 0, 0};
    xpnet_gemm_sum(parts, bias, C, slices, mn, n, has_bias);
}
'''


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    libraries = {}

    def get(dtype, tile=(gemm_kernels.TILE, gemm_kernels.TILE)):
        key = np.dtype(dtype).name, tuple(tile)
        if key not in libraries:
            libraries[key] = build_library(
                tmp_path_factory.mktemp("gemm"),
                f"#define T {C_TYPES[key[0]]}\n#define TM {tile[0]}\n#define TN {tile[1]}\n"
                + PRELUDE + source("gemm_tiles.cu") + source("gemm_sum.cu") + DRIVER)
        return libraries[key]

    return get


def gemm(library, a, b, bias=None, kernel="tiles", tile=None):
    """What CupyOps.gemm does with the tile kernel, on the host."""
    m, k = a.shape
    n = b.shape[1]
    p = gemm_kernels.plan(m, n, k, kernel, tile)
    out = np.full((m, n), np.nan, dtype=a.dtype)  # every element must be written
    parts = out if p.slices == 1 else np.full((p.slices, m, n), np.nan, dtype=a.dtype)
    library.launch_tiles(*map(ctypes.c_uint, p.grid + p.block[:2]),
                         *c_args(gemm_kernels.tiles_args(p, a, b, bias, parts)))
    if p.slices > 1:
        library.launch_sum(*c_args(gemm_kernels.sum_args(parts, bias, out)))
    return out, p


def operands(m, k, n, dtype, layout, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k) if layout[0] == "n" else (k, m)).astype(dtype)
    b = rng.standard_normal((k, n) if layout[1] == "n" else (n, k)).astype(dtype)
    return (a if layout[0] == "n" else a.T), (b if layout[1] == "n" else b.T)


def assert_product(got, a, b, bias=None):
    want = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    if bias is not None:
        want += bias
        scale += np.abs(bias)
    eps = np.finfo(a.dtype).eps
    # k-term sums in k order: error within k * eps of the absolute sum (a loose bound)
    assert np.all(np.abs(got - want) <= 2 * a.shape[1] * eps * scale + 1e-30)


# (M, K, N) as the conv layers multiply: forward W_col @ col, dW as (col @ d^T)^T,
# dcol = W_col^T @ d; DeepConvNet's Conv2 and Conv6 and SimpleConvNet's conv, at batch 4
CONV_SHAPES = [
    ((16, 144, 3136), "nn"),  # forward: M filters, N windows
    ((144, 3136, 16), "nt"),  # dW: K runs over every window
    ((144, 16, 3136), "tn"),  # the columns' gradient
    ((64, 576, 196), "nn"),
    ((576, 196, 64), "nt"),
    ((30, 25, 2304), "nn"),
    ((25, 2304, 30), "nt"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, layout", CONV_SHAPES)
def test_tile_kernel_on_the_convolutions_shapes(build, dtype, shape, layout):
    m, k, n = shape
    a, b = operands(m, k, n, dtype, layout)
    got, p = gemm(build(dtype), a, b)
    assert backends.dtype_name(got.dtype) == np.dtype(dtype).name
    assert_product(got, a, b)
    if layout == "nt":  # dW's long K is cut into slices and added back
        assert p.slices > 1 and p.kc * p.slices >= k > p.kc * (p.slices - 1)


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (5, 7, 3), (3, 1000, 6), (7, 129, 9),
                                     (33, 64, 65), (4, 0, 4), (130, 3, 1)])
@pytest.mark.parametrize("layout", ["nn", "tn", "nt", "tt"])
def test_tile_kernel_at_the_edges_with_a_bias(build, m, k, n, layout):
    """Sizes off the 4 x 4 tile, K of none, one and many slices; every element written
    once (NaN-filled outputs), the bias added once whether or not K was cut."""
    a, b = operands(m, k, n, "float64", layout, seed=m + k + n)
    bias = np.random.default_rng(1).standard_normal(n)
    got, _ = gemm(build("float64"), a, b, bias)
    assert_product(got, a, b, bias)
    got, _ = gemm(build("float64"), a, b)
    assert_product(got, a, b)


OTHER_TILES = [t for t in gemm_kernels.TILES if t != (gemm_kernels.TILE, gemm_kernels.TILE)]


@pytest.mark.parametrize("tile", OTHER_TILES, ids=[f"{tm}x{tn}" for tm, tn in OTHER_TILES])
@pytest.mark.parametrize("shape, layout", CONV_SHAPES[:3] + [((7, 129, 9), "tt"),
                                                             ((33, 64, 65), "nt")])
def test_the_other_tiles_give_the_same_products(build, tile, shape, layout):
    """The tiles scripts/graph_probe.py times against 4 x 4: the same kernel source with
    other TM and TN, on the convolutions' shapes and sizes off every tile."""
    m, k, n = shape
    a, b = operands(m, k, n, "float64", layout, seed=k)
    bias = np.random.default_rng(2).standard_normal(n)
    got, p = gemm(build("float64", tile), a, b, bias, tile=tile)
    assert (p.tm, p.tn) == tile
    assert_product(got, a, b, bias)


def test_plan_sizes_the_grid_to_the_product():
    small = gemm_kernels.plan(100, 50, 784)  # the two-layer net: the block kernel
    assert small.kernel == "block" and small.grid == (2, 25, 1)
    forward = gemm_kernels.plan(16, 78400, 144)  # Conv2's forward at batch 100
    assert forward.kernel == "tiles" and forward.slices == 1 and forward.block == (32, 4, 1)
    assert forward.grid[0] * 32 * 4 >= 78400
    dw = gemm_kernels.plan(144, 16, 78400)  # its dW: 144 threads a slice without slices
    assert dw.slices > 100 and dw.kc >= gemm_kernels.MIN_SLICE
    threads = dw.grid[0] * dw.grid[1] * dw.grid[2] * dw.block[0] * dw.block[1]
    assert gemm_kernels.TARGET_THREADS <= threads <= 2 * gemm_kernels.TARGET_THREADS
    assert gemm_kernels.plan(4, 4, 4, "tiles").slices == 1
    assert gemm_kernels.plan(0, 5, 300, "tiles").grid[1] == 0  # nothing to launch
    wide = gemm_kernels.plan(16, 78400, 144, tile=(4, 8))  # half the threads along N
    assert wide.grid[0] * wide.block[0] * 8 >= 78400 > (wide.grid[0] - 1) * wide.block[0] * 8
    with pytest.raises(ValueError, match=r"tile=\(3, 3\); expected one of \(4, 4\)"):
        gemm_kernels.plan(16, 78400, 144, tile=(3, 3))
    with pytest.raises(ValueError, match="kernel='cublas'; expected 'block' or 'tiles'"):
        gemm_kernels.plan(4, 4, 4, "cublas")
    with pytest.raises(ValueError, match=r"\(80000000, 8\) @ \(8, 1\) product is past"):
        gemm_kernels.plan(80_000_000, 1, 8, "tiles")
