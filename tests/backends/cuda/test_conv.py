"""backends/cuda/kernels/conv.cu on the CPU: compiled as C++, against the array code.

Without a GPU the kernels' index arithmetic would go untested until a GPU
session. Their grid-stride loops run every element in turn when compiled
for the host with one "thread", so here the exact source CuPy compiles is
built with the C++ compiler, called through ctypes with the arguments
:func:`backends.cuda.conv.launch_args` packs (as CupyOps passes them),
and compared bit for bit with :class:`backends.ops.StridedOps` on NumPy. On a
GPU, tests/backends/test_ops.py and the layer tests run the kernels themselves.
"""

import numpy as np
import pytest

from backends.cuda import conv as conv_kernels
from backends.cuda.sources import source
from backends.ops import StridedOps, empty_in_order as _empty, memory_order as _order
from tests.backends.cuda.cpp_build import C_TYPES, build as build_library, c_args, needs_compiler

pytestmark = needs_compiler

# The CUDA names the kernels use, for one host thread walking every element.
PRELUDE = r'''
struct xpnet_dim { long long x; };
static const xpnet_dim blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__
'''

INDEX = {"int8": "signed char", "int32": "int"}

plain = StridedOps(np)
rng = np.random.default_rng(0)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    libraries = {}

    def get(dtype, index="int8"):
        key = (np.dtype(dtype).name, np.dtype(index).name)
        if key not in libraries:
            libraries[key] = build_library(
                tmp_path_factory.mktemp("kernels"),
                f"#define T {C_TYPES[key[0]]}\n#define A {INDEX[key[1]]}\n" + PRELUDE
                + source("conv.cu"))
        return libraries[key]

    return get


def launch(library, name, arrays, **sizes):
    args, total = conv_kernels.launch_args(name, *arrays, **sizes)
    assert total == arrays[-1].size
    getattr(library, name)(*c_args(args))


def image(shape, dtype, layout):
    """(N, C, H, W) in C order, or as a view of channel-major (C, N, H, W) memory."""
    n, c, h, w = shape
    if layout == "channel-major":
        return rng.standard_normal((c, n, h, w)).astype(dtype).transpose(1, 0, 2, 3)
    return rng.standard_normal(shape).astype(dtype)


def out_size(size, window, stride, pad):
    return (size + 2 * pad - window) // stride + 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["C", "channel-major"])
@pytest.mark.parametrize("fh, fw, stride, pad", [(3, 3, 1, 1), (5, 5, 1, 0), (2, 3, 2, 2),
                                                 (2, 2, 2, 0), (3, 2, 3, 1), (1, 1, 1, 0)])
def test_im2col_and_col2im_kernels_match_the_array_code(build, dtype, layout, fh, fw, stride, pad):
    lib = build(dtype)
    x = image((3, 2, 7, 6), dtype, layout)
    n, c, h, w = x.shape
    oh, ow = out_size(h, fh, stride, pad), out_size(w, fw, stride, pad)
    sizes = dict(n=n, c=c, h=h, w=w, fh=fh, fw=fw, stride=stride, pad=pad, oh=oh, ow=ow)
    col = np.full((c * fh * fw, n * oh * ow), np.nan, dtype=dtype)
    launch(lib, "xpnet_im2col", (x, col), **sizes)
    np.testing.assert_array_equal(col, plain.im2col(x, fh, fw, stride, pad, oh, ow))

    dcol = rng.standard_normal(col.shape).astype(dtype)
    img = _empty(np, x.shape, dtype, (1, 0, 2, 3))
    img[...] = np.nan
    launch(lib, "xpnet_col2im", (dcol, img), **sizes)
    np.testing.assert_array_equal(img, plain.col2im(dcol, x.shape, fh, fw, stride, pad, oh, ow))


@pytest.mark.parametrize("dtype, index", [("float32", "int8"), ("float64", "int32")])
@pytest.mark.parametrize("layout", ["C", "channel-major"])
@pytest.mark.parametrize("ph, pw, stride, pad", [(2, 2, 2, 0), (3, 3, 2, 1), (2, 3, 1, 1),
                                                 (3, 3, 3, 0), (2, 2, 1, 0)])
def test_max_pool_kernels_match_the_array_code(build, dtype, index, layout, ph, pw, stride, pad):
    lib = build(dtype, index)
    x = image((3, 4, 9, 8), dtype, layout)
    x[0, 0, :3, :3] = 0.5  # ties: the first maximum must win
    x[1, 1] = -np.abs(x[1, 1])  # all negative: the -inf padding must never win
    n, c, h, w = x.shape
    oh, ow = out_size(h, ph, stride, pad), out_size(w, pw, stride, pad)
    sizes = dict(n=n, c=c, h=h, w=w, ph=ph, pw=pw, stride=stride, pad=pad, oh=oh, ow=ow)
    out = _empty(np, (n, c, oh, ow), dtype, _order(x))
    arg = _empty(np, out.shape, index, _order(x))
    launch(lib, "xpnet_max_pool", (x, out, arg), **sizes)
    ref_out, ref_arg = plain.max_pool(x, ph, pw, stride, pad, oh, ow)
    if index == "int32":
        ref_arg = ref_arg.astype("int32")  # the array code picks int8 for small windows
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)

    for dout in (rng.standard_normal(out.shape).astype(dtype),
                 image(out.shape, dtype, "channel-major")):
        dx = _empty(np, x.shape, dtype, _order(x))
        dx[...] = np.nan
        launch(lib, "xpnet_max_pool_grad", (dout, arg, dx), **sizes)
        np.testing.assert_array_equal(dx, plain.max_pool_grad(dout, arg, x, ph, pw, stride, pad))


def test_an_unknown_kernel_is_refused_by_name():
    with pytest.raises(ValueError, match="no conv kernel named 'xpnet_conv'"):
        conv_kernels.launch_args("xpnet_conv")
