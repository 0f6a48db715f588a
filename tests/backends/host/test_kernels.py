"""backends/host/build.py, conv.py and kernels/: the compiled kernels against the array code,
their calling convention and their build into a private cache."""

import ctypes
import os
import pathlib
import re
import subprocess
import sys

import numpy as np

import backends
import pytest

from backends.host import build as cpu_kernels
from backends.host import ops as host_ops
from backends.host import threads as host_threads_module
from backends.host.conv import PaddedGrid
from backends.host.ops import HostOps
from backends.settings import Settings
from tests.conftest import child_env


def load(environ):
    """The kernels as :func:`cpu_kernels.load` gives them for an environment."""
    return cpu_kernels.load(Settings.read(environ), environ)


def ops(threads, kernels=None):
    """HostOps on ``threads`` threads with ``kernels`` (a build), or NumPy code only."""
    return HostOps(np, threads=threads,
                   kernels=None if kernels is None else lambda: (kernels, "the build under test"))


KERNELS, WHY = backends.backend_class("numpy").kernels(backends.settings())
needs_kernels = pytest.mark.skipif(KERNELS is None, reason=f"no compiled kernels: {WHY}")
RNG = np.random.default_rng(5)

# (N, C, H, W), (FN, FH, FW), pad: the book's nets' shapes at small batches, filter
# counts that leave a remainder block (5, 30), one and three channels,
# non-square filters and images, a padding wider than the filter (dx by col2im); 16-80
# filters and 32 channels take the kernels vectorised over the filters (1-5 vectors)
CASES = [((2, 16, 9, 9), (16, 3, 3), 1), ((3, 1, 28, 28), (30, 5, 5), 0),
         ((2, 1, 10, 10), (16, 3, 3), 1), ((2, 3, 7, 6), (5, 2, 3), 0),
         ((1, 6, 8, 5), (7, 3, 2), 2), ((2, 8, 6, 6), (9, 3, 3), 2),
         ((1, 4, 5, 5), (4, 2, 2), 3), ((2, 5, 7, 7), (8, 1, 1), 0),
         ((5, 32, 7, 7), (64, 3, 3), 1), ((3, 16, 7, 5), (48, 3, 3), 1),
         ((2, 32, 5, 5), (80, 3, 3), 1), ((2, 5, 6, 6), (64, 3, 3), 1)]


def channel_major(shape, dtype):
    n, c, h, w = shape
    return RNG.standard_normal((c, n, h, w)).astype(dtype).transpose(1, 0, 2, 3)


def run(ops, x, W, b, pad, dout, input_grad=True):
    fn, _, fh, fw = W.shape
    out_h, out_w = x.shape[2] + 2 * pad - fh + 1, x.shape[3] + 2 * pad - fw + 1
    out, col = ops.conv(x, W, b, 1, pad, out_h, out_w)
    dx, dW, db = ops.conv_grad(dout, x, W, col, 1, pad, input_grad)
    return out, col, dx, dW, db


# The source as built here, and for CPUs without AVX-512 (256-bit vectors, smaller
# blocks) and for plain x86-64 or any target (no -march): whichever path this
# machine would not take is still tested.
BUILDS = {"native": cpu_kernels.FLAGS,
          "no-avx512": cpu_kernels.FLAGS + ("-mno-avx512f",),
          "generic": tuple(f for f in cpu_kernels.FLAGS if f != "-march=native")}


# The pooling's shuffles are spelled another way for GCC before 12: that spelling too.
POOL_BUILDS = dict(BUILDS, **{"gcc<12 shuffles": cpu_kernels.FLAGS + ("-DXPNET_OLD_SHUFFLE",)})


SKIPS = {"no-avx512": "the compiler has no -mno-avx512f (not an x86 target)",
         "gcc<12 shuffles": "the compiler has no __builtin_shuffle (clang: GCC's alone)"}


_BUILT = {}  # build name -> Kernels: the two fixtures share each build


def _build(name, flags, tmp_path_factory):
    if name not in _BUILT:
        if name in SKIPS and not _compiles(flags, tmp_path_factory):
            _BUILT[name] = SKIPS[name]
        else:
            path = cpu_kernels.build(tmp_path_factory.mktemp("build"), cpu_kernels.compiler(),
                                     flags=flags)
            _BUILT[name] = cpu_kernels.Kernels(ctypes.CDLL(str(path)), path)
    if isinstance(_BUILT[name], str):
        pytest.skip(_BUILT[name])
    return _BUILT[name]


@pytest.fixture(scope="module", params=list(BUILDS))
def built(request, tmp_path_factory):
    """The kernels of one build, as the ones the host uses."""
    return _build(request.param, BUILDS[request.param], tmp_path_factory)


@pytest.fixture(scope="module", params=list(POOL_BUILDS))
def pool_built(request, tmp_path_factory):
    return _build(request.param, POOL_BUILDS[request.param], tmp_path_factory)


def _compiles(flags, tmp_path_factory):
    try:
        cpu_kernels.build(tmp_path_factory.mktemp("probe"), cpu_kernels.compiler(), flags=flags)
        return True
    except RuntimeError:
        return False


@needs_kernels
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("x_shape, w_shape, pad", CASES)
def test_direct_convolution_matches_im2col(x_shape, w_shape, pad, dtype, rtol, built):
    fn, fh, fw = w_shape
    x = channel_major(x_shape, dtype)
    W = RNG.standard_normal((fn, x_shape[1], fh, fw)).astype(dtype)
    b = RNG.standard_normal(fn).astype(dtype)
    out_shape = (x_shape[0], fn, x_shape[2] + 2 * pad - fh + 1, x_shape[3] + 2 * pad - fw + 1)
    dout = channel_major(out_shape, dtype)
    direct, im2col = ops(1, built), ops(1)
    got = run(direct, x, W, b, pad, dout)
    want = run(im2col, x, W, b, pad, dout)
    assert isinstance(got[1], PaddedGrid) and not isinstance(want[1], PaddedGrid)
    for name, g, w in zip(["out", "dx", "dW", "db"], got[:1] + got[2:], want[:1] + want[2:]):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        scale = np.abs(w).max()
        assert np.abs(g - w).max() <= rtol * scale * (x_shape[1] * fh * fw) ** 0.5, name
    # outputs and dx in the channel-major layout the next layers read in place
    assert got[0].transpose(1, 0, 2, 3).flags.c_contiguous
    if pad < min(fh, fw):  # else dx comes from col2im, a view of its padded image
        assert got[2].transpose(1, 0, 2, 3).flags.c_contiguous
    no_dx = run(direct, x, W, b, pad, dout, input_grad=False)
    assert no_dx[2] is None and np.array_equal(no_dx[3], got[3])


@needs_kernels
@pytest.mark.parametrize("c, fn", [(8, 12), (32, 32)])  # by grid blocks; by filter vectors
def test_the_split_across_threads_gives_the_same_outputs(monkeypatch, c, fn, built):
    monkeypatch.setattr(host_threads_module, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(host_threads_module, "MIN_PART_MACS", 1)
    x = channel_major((4, c, 12, 12), "float32")
    W = RNG.standard_normal((fn, c, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(fn).astype(np.float32)
    dout = channel_major((4, fn, 12, 12), "float32")
    one = run(ops(1, built), x, W, b, 1, dout)
    three = run(ops(3, built), x, W, b, 1, dout)
    assert isinstance(one[1], PaddedGrid)
    assert np.array_equal(one[0], three[0])  # each output is one thread's sum
    assert np.array_equal(one[2], three[2])
    # dW: each thread sums its range of the grid, the parts are added in order
    np.testing.assert_allclose(three[3], one[3], rtol=0, atol=1e-5 * np.abs(one[3]).max())
    again = run(ops(3, built), x, W, b, 1, dout)
    assert np.array_equal(again[3], three[3])  # the same thread count, the same bits


@needs_kernels
def test_stride_two_and_mixed_dtypes_keep_im2col():
    host = ops(1, KERNELS)
    x = channel_major((2, 4, 8, 8), "float32")
    W = RNG.standard_normal((3, 4, 3, 3)).astype(np.float32)
    _, col = host.conv(x, W, np.zeros(3, np.float32), 1, 1, 8, 8)
    assert isinstance(col, PaddedGrid)  # the direct convolution, where it applies
    _, col = host.conv(x, W, np.zeros(3, np.float32), 2, 1, 4, 4)
    assert not isinstance(col, PaddedGrid)
    _, col = host.conv(x, W.astype(np.float64), np.zeros(3), 1, 1, 8, 8)
    assert not isinstance(col, PaddedGrid)


def test_off_by_the_environment_and_a_bad_value_named(tmp_path):
    kernels, why = load({"XPNET_HOST_KERNELS": "0", "XPNET_CACHE_DIR": str(tmp_path)})
    assert kernels is None and "XPNET_HOST_KERNELS=0" in why
    with pytest.raises(ValueError, match=r"XPNET_HOST_KERNELS='yes'.*expected 1 .* or 0"):
        load({"XPNET_HOST_KERNELS": "yes"})


def test_without_a_compiler_the_host_keeps_im2col(tmp_path):
    env = {"CC": str(tmp_path / "no-such-compiler"), "XPNET_CACHE_DIR": str(tmp_path / "c")}
    kernels, why = load(env)
    assert kernels is None and "no C compiler" in why and "im2col" in why
    broken = tmp_path / "cc"  # a compiler that fails: its message is passed on
    runs = tmp_path / "runs"
    broken.write_text(f"#!/bin/sh\necho run >> {runs}\necho 'cc: error: out of luck' >&2\n"
                      f"exit 1\n")
    broken.chmod(0o755)
    kernels, why = load({"CC": str(broken), "XPNET_CACHE_DIR": str(tmp_path / "c")})
    assert kernels is None and "out of luck" in why
    # tried with -march=native and without, in the cache folder only: a failed build is no
    # reason to build again in a private folder of xpnet's own
    assert runs.read_text().count("run") == 2 and "private folder" not in why
    assert not list((tmp_path / "c").glob("*.so"))  # nothing half-written left in the cache


@needs_kernels
def test_built_once_into_a_private_cache_folder(tmp_path):
    env = {"XPNET_CACHE_DIR": str(tmp_path / "cache"), "PATH": os.environ["PATH"]}
    kernels, why = load(env)
    assert kernels is not None and str(tmp_path) in why and "private folder" not in why
    cache = tmp_path / "cache"
    assert cache.stat().st_mode & 0o777 == 0o700  # made private
    built = list(cache.iterdir())
    assert [p.suffix for p in built] == [".so"]  # no temporary files left beside it
    assert built[0].stat().st_mode & 0o022 == 0
    stamp = built[0].stat().st_mtime_ns
    assert cpu_kernels.build(cache, cpu_kernels.compiler(env)) == built[0]
    assert built[0].stat().st_mtime_ns == stamp  # found, not rebuilt
    assert kernels.block["float32"] == 2 * kernels.block["float64"]


def test_cache_folder_by_default():
    assert cpu_kernels.default_cache_dir({"XDG_CACHE_HOME": "/x"}) == pathlib.Path("/x/xpnet")



@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["sample-major", "channel-major", "strided"])
def test_relu_in_one_pass_gives_numpys_two_passes_bit_for_bit(dtype, layout, monkeypatch,
                                                              built):
    monkeypatch.setattr(host_threads_module, "MIN_PART_BYTES", 1)  # split even this small array
    x = channel_major((5, 4, 9, 7), dtype)
    if layout == "sample-major":
        x = np.ascontiguousarray(x)
    elif layout == "strided":  # not compact: the NumPy passes take it
        x = x[:, :, ::2]
    x.flat[[0, 5, 9, 11]] = [np.nan, -0.0, -np.inf, np.inf]
    fast, plain = ops(3, built), ops(3)
    (y, keep), (want_y, want_keep) = fast.relu(x), plain.relu(x)
    assert y.strides == want_y.strides and keep.strides == want_keep.strides
    assert _same_bits(y, want_y) and np.array_equal(keep, want_keep)
    assert np.isnan(y.flat[0]) and y.flat[11] == np.inf  # the book's: NaN passed on
    assert not np.signbit(y[x <= 0]).any() and np.all(y[x <= 0] == 0)  # -inf and -0.0: +0


def _same_bits(a, b):
    return np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                          np.ascontiguousarray(b).view(np.uint8))


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_grid_kernel_writes_nothing_past_its_outputs(dtype, built):
    """The last grid block ends mid-row: its store must stop at the last valid output
    (a one-element overrun would land in the next filter's row, or past the array)."""
    n, c, f, h, w = 2, 3, 5, 6, 7
    hp, wp = h + 2, w + 2
    block = built.block[dtype]
    length = -(-n * hp * wp // block) * block
    x = np.zeros((c, length + 2 * wp + 2), dtype=dtype)
    x[:, :n * hp * wp].reshape(c, n, hp, wp)[:, :, 1:-1, 1:-1] = RNG.standard_normal((c, n, h, w))
    W = RNG.standard_normal((f, c, 3, 3)).astype(dtype)
    b = RNG.standard_normal(f).astype(dtype)
    pixels = n * h * w
    out = np.full(f * pixels + 64, 12345.0, dtype=dtype)  # the outputs, then a guard
    rows = np.full((f, pixels + 64), 12345.0, dtype=dtype)  # each filter's row guarded
    for dest, stride in ((out, pixels), (rows, pixels + 64)):
        built.conv[dtype](x=x.ctypes.data, xs=x.shape[1], w=W.ctypes.data, b=b.ctypes.data,
                          F=f, C=c, KH=3, KW=3, hp=hp, wp=wp, oh=h, ow=w, cells=n * hp * wp,
                          out=dest.ctypes.data, os=stride, lo=0, hi=length)
    assert np.all(out[f * pixels:] == 12345.0)
    assert np.all(rows[:, pixels:] == 12345.0)
    np.testing.assert_array_equal(out[:f * pixels].reshape(f, pixels), rows[:, :pixels])


# (N, C, H, W): the book's pooled sizes (28, 16, 8 and SimpleConvNet's 24 wide) and rows
# of 1-9 and 17 outputs (blocks of 8, of 4, one at a time, the last block overlapping),
# odd heights and widths (the last row or column in no window)
POOL_CASES = [(3, 4, 28, 28), (2, 3, 16, 16), (3, 5, 8, 8), (2, 3, 24, 24), (2, 3, 2, 2),
              (1, 2, 4, 6), (2, 2, 6, 10), (1, 3, 2, 14), (2, 2, 5, 18), (1, 2, 3, 34),
              (2, 3, 7, 9), (2, 2, 9, 15)]


def _pool_input(shape, dtype, layout):
    x = channel_major(shape, dtype)
    if layout == "sample-major":
        x = np.ascontiguousarray(x)
    x[0, 0, :2, :2] = 0.5  # a tie: the first offset keeps it
    x[-1, -1, 0, :2] = [-0.0, 0.0]
    x[0, -1, 0, 1] = -np.inf
    x.flat[[7, x.size - 1]] = [np.nan, np.inf]  # a NaN wins the window, as in maximum()
    return x


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["channel-major", "sample-major"])
@pytest.mark.parametrize("shape", POOL_CASES)
def test_max_pooling_gives_the_array_codes_outputs_and_gradient(shape, layout, dtype,
                                                                 pool_built):
    x = _pool_input(shape, dtype, layout)
    oh, ow = shape[2] // 2, shape[3] // 2
    fast, plain = ops(1, pool_built), ops(1)
    (out, arg), (want, want_arg) = fast.max_pool(x, 2, 2, 2, 0, oh, ow), \
        plain.max_pool(x, 2, 2, 2, 0, oh, ow)
    assert out.strides == want.strides and arg.strides == want_arg.strides
    assert backends.dtype_name(arg.dtype) == "int8"
    np.testing.assert_array_equal(arg, want_arg)
    np.testing.assert_array_equal(out, want)  # NaN where NumPy gives NaN
    assert np.isnan(out).sum() == 1
    dout = channel_major(want.shape, dtype)
    dout[0, 0, 0, 0] = np.nan  # times 0 is NaN too, as NumPy's multiply by the mask
    dx, want_dx = fast.max_pool_grad(dout, arg, x, 2, 2, 2, 0), \
        plain.max_pool_grad(dout, want_arg, x, 2, 2, 2, 0)
    assert dx.strides == want_dx.strides
    assert _same_bits(dx, want_dx)


@needs_kernels
def test_the_pooling_kernels_run_for_the_books_windows_and_the_array_code_for_others(
        monkeypatch):
    calls = []
    for name in ("max_pool", "max_pool_grad"):
        real = getattr(host_ops.StridedOps, name)
        monkeypatch.setattr(host_ops.StridedOps, name, lambda self, *a, name=name, real=real: (
            calls.append(name), real(self, *a))[1])
    host = ops(1, KERNELS)
    x = channel_major((2, 3, 8, 8), "float32")
    out, arg = host.max_pool(x, 2, 2, 2, 0, 4, 4)
    host.max_pool_grad(out, arg, x, 2, 2, 2, 0)
    assert calls == []  # the compiled kernels did both
    host.max_pool(x, 3, 3, 2, 0, 3, 3)  # another window, a stride, padding: the array code
    host.max_pool(x, 2, 2, 1, 0, 7, 7)
    out, arg = host.max_pool(x, 2, 2, 2, 1, 5, 5)
    host.max_pool_grad(out, arg, x, 2, 2, 2, 1)
    host.max_pool(x[:, :, :, ::2], 2, 2, 2, 0, 4, 2)  # not compact
    host.max_pool(x.astype(np.float16), 2, 2, 2, 0, 4, 4)
    assert calls == ["max_pool"] * 3 + ["max_pool_grad"] + ["max_pool"] * 2


@needs_kernels
@pytest.mark.parametrize("layout", ["channel-major", "sample-major"])
def test_max_pooling_split_across_threads_gives_the_same_bits(monkeypatch, layout):
    monkeypatch.setattr(host_threads_module, "MIN_PART_BYTES", 1)
    x = _pool_input((5, 3, 12, 10), "float32", layout)
    one, three = ops(1, KERNELS), ops(3, KERNELS)
    (out1, arg1), (out3, arg3) = one.max_pool(x, 2, 2, 2, 0, 6, 5), three.max_pool(x, 2, 2, 2, 0, 6, 5)
    assert _same_bits(out1, out3) and np.array_equal(arg1, arg3)
    dout = channel_major(out1.shape, "float32")
    assert _same_bits(one.max_pool_grad(dout, arg1, x, 2, 2, 2, 0),
                      three.max_pool_grad(dout, arg3, x, 2, 2, 2, 0))


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("w", [2, 6, 10, 14, 18])  # one at a time, 4, 4 + overlap, 8 + overlap
def test_the_pooling_kernels_write_nothing_past_their_outputs(dtype, w, pool_built):
    h, planes = 4, 3
    oh, ow = h // 2, w // 2
    x = RNG.standard_normal((planes, h, w)).astype(dtype)
    guard = 64
    out = np.full(planes * oh * ow + guard, 12345.0, dtype=dtype)
    arg = np.full(planes * oh * ow + guard, 99, dtype=np.int8)
    pool_built.max_pool[dtype](x=x.ctypes.data, out=out.ctypes.data, arg=arg.ctypes.data,
                               h=h, w=w, lo=1, hi=2)
    inside = slice(oh * ow, 2 * oh * ow)  # plane 1 only: planes 0 and 2 untouched
    assert np.all(np.delete(out, np.r_[inside]) == 12345.0)
    assert np.all(np.delete(arg, np.r_[inside]) == 99)
    assert np.all(arg[inside] <= 3)
    dx = np.full(planes * h * w + guard, 12345.0, dtype=dtype)
    d = RNG.standard_normal(planes * oh * ow).astype(dtype)
    pool_built.max_pool_grad[dtype](d=d.ctypes.data, arg=arg.ctypes.data, dx=dx.ctypes.data,
                                    h=h, w=w, lo=1, hi=2)
    assert np.all(np.delete(dx, np.r_[h * w:2 * h * w]) == 12345.0)
    plane = dx[h * w:2 * h * w].reshape(h, w)
    assert np.count_nonzero(plane) == oh * ow  # one pixel of each window gets its dout


# --- the calling convention: one table, the headers' prototypes ----------------------------

def _prototypes():
    """``{kernel: ((C type, name), ...)}`` parsed from every ``void NAME(xpnet_...)(...)``
    the headers declare."""
    found = {}
    for name, text in cpu_kernels.sources().items():
        for kernel, params in re.findall(r"void\s+NAME\((xpnet_\w+)\)\s*\(([^)]*)\)", text):
            parsed = []
            for param in params.split(","):
                words = param.replace("restrict", "").replace("*", " * ").split()
                parsed.append((" ".join(words[:-1]).replace(" *", "*"), words[-1]))
            found[kernel] = tuple(parsed)
    return found


def test_the_signature_table_is_what_the_headers_declare():
    assert _prototypes() == cpu_kernels.SIGNATURES


def test_a_kernel_is_called_by_keyword_and_refuses_a_wrong_argument():
    kernels = KERNELS or pytest.skip(f"no compiled kernels: {WHY}")
    relu = kernels.relu["float32"]
    x = np.array([-1.0, 2.0], np.float32)
    y, keep = np.empty_like(x), np.empty(2, np.uint8)
    relu(x=x.ctypes.data, y=y.ctypes.data, keep=keep.ctypes.data, n=2)
    assert y.tolist() == [0.0, 2.0] and keep.tolist() == [0, 1]
    with pytest.raises(TypeError, match="xpnet_relu_float32: missing argument 'n'"):
        relu(x=x.ctypes.data, y=y.ctypes.data, keep=keep.ctypes.data)
    with pytest.raises(TypeError, match="xpnet_relu_float32: no parameter 'size'"):
        relu(x=x.ctypes.data, y=y.ctypes.data, keep=keep.ctypes.data, n=2, size=2)


# --- the cache runs nothing it cannot trust ---------------------------------------------------

PLANTED = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE* f = fopen(getenv("XPNET_PLANTED_RAN"), "w");
    if (f) { fputs("the planted library ran\n", f); fclose(f); }
}
"""

CONVOLVE = r"""
import os
import re
import numpy as np
import backends
from backends.host.ops import HostOps
from framework.layers import Convolution
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
b = rng.standard_normal(4).astype(np.float32)
out = Convolution(W, b, pad=1).forward(x)
want, _ = HostOps(np, threads=1).conv(x, W, b, 1, 1, 9, 9)  # NumPy only: im2col + BLAS
np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
why = backends.backend_class("numpy").kernels(backends.settings())[1]
own = re.search(r"xpnet's own, (.+?), removed once loaded", why)
assert own is None or not os.path.exists(own.group(1)), f"left behind: {own.group(1)}"
print(why)
"""


def _plant(folder):
    """A library whose constructor writes a file, under the kernels' name in ``folder``."""
    cc = cpu_kernels.compiler()
    src = folder.parent / "planted.c"
    src.write_text(PLANTED)
    path = folder / cpu_kernels.library_name(cc)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(path), str(src)], check=True)
    return path


def _convolve_with_cache(folder, marker):
    done = subprocess.run([sys.executable, "-c", CONVOLVE], capture_output=True, text=True,
                          timeout=120, env=child_env(XPNET_CACHE_DIR=str(folder),
                                                     XPNET_PLANTED_RAN=str(marker)))
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_kernels
def test_a_library_planted_in_a_folder_others_own_and_write_never_runs(tmp_path):
    """The lab's shared cache folder: world-writable and another user's. A library planted
    under the kernels' name there is never loaded; xpnet builds its own privately, says
    so, and the convolution is right."""
    if os.geteuid() != 0:
        pytest.skip("making a folder another user's needs root (CI runs as root)")
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    planted = _plant(shared)
    shared.chmod(0o777)
    os.chown(shared, 65534, 65534)  # nobody's
    os.chown(planted, 65534, 65534)
    marker = tmp_path / "ran"
    why = _convolve_with_cache(shared, marker)
    assert not marker.exists(), "the planted library ran"
    assert "private folder of xpnet's own" in why and "belongs to user 65534" in why
    assert "removed once loaded" in why  # the script checked that it was, after convolving


@needs_kernels
@pytest.mark.parametrize("case", ["folder writable by others", "library writable by its group",
                                  "library writable by others alone", "a link to a library",
                                  "a broken link", "a folder of the library's name",
                                  "library of another user"])
def test_a_library_that_is_not_trusted_is_not_loaded(tmp_path, case):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    planted = _plant(folder)
    if case == "folder writable by others":
        folder.chmod(0o777)
        expected = "is writable by others"
    elif case == "library writable by its group":
        planted.chmod(0o775)
        expected = "is writable by its group"
    elif case == "library writable by others alone":
        planted.chmod(0o757)
        expected = "is writable by others"
    elif case == "a link to a library":  # the link's target could be changed under it
        elsewhere = tmp_path / "elsewhere.so"
        planted.rename(elsewhere)
        planted.symlink_to(elsewhere)
        expected = "is not a regular file"
    elif case == "a broken link":  # a name someone else may make resolve later
        planted.unlink()
        planted.symlink_to(tmp_path / "not-yet.so")
        expected = "is not a regular file"
    elif case == "a folder of the library's name":
        planted.unlink()
        planted.mkdir()
        expected = "is not a regular file"
    else:
        if os.geteuid() != 0:
            pytest.skip("giving a file to another user needs root (CI runs as root)")
        os.chown(planted, 65534, 65534)
        expected = "belongs to user 65534"
    marker = tmp_path / "ran"
    why = _convolve_with_cache(folder, marker)
    assert not marker.exists(), "the planted library ran"
    assert "private folder of xpnet's own" in why and expected in why
    assert "removed once loaded" in why  # the script checked that it was, after convolving


@needs_kernels
def test_the_kernels_of_each_cache_folder_are_its_own(tmp_path):
    """The process keeps the kernels it loaded for each setting: another cache folder (a
    test's, a scoped setting) builds and loads its own, not the first one's."""
    numpy_backend = backends.backend_class("numpy")
    paths = []
    for name in ("a", "b", "a"):
        kernels, why = numpy_backend.kernels(Settings.read({"XPNET_CACHE_DIR":
                                                            str(tmp_path / name)}))
        assert kernels is not None, why
        paths.append(kernels.path)
    assert [p.parent for p in paths] == [tmp_path / "a", tmp_path / "b", tmp_path / "a"]
    assert paths[2] is paths[0]  # the same load, kept


@needs_kernels
def test_a_cache_folder_that_cannot_be_made_leaves_a_private_folder_of_xpnets_own(tmp_path):
    """A cache folder that cannot be made (a name too long for the file system here; a
    read-only disk or a folder of another user's elsewhere) or whose parent is a file:
    the kernels are built in a private folder of xpnet's own, and the reason names the
    folder and what is wrong with it; no error ends the process."""
    (tmp_path / "a-file").write_text("")
    for wanted, what in ((tmp_path / ("x" * 300) / "xpnet",
                          "cannot be made (File name too long)"),
                         (tmp_path / "a-file" / "xpnet",
                          "cannot be examined (Not a directory)")):
        kernels, why = load({"XPNET_CACHE_DIR": str(wanted), "PATH": os.environ["PATH"]})
        assert kernels is not None, why
        assert f"{wanted} {what}" in why and "private folder of xpnet's own" in why


@needs_kernels
def test_a_cache_folder_reached_through_a_link_is_the_folder_it_names(tmp_path):
    """``XPNET_CACHE_DIR`` may be a link (to a scratch disk, say): the folder it names is
    checked, and used where it may be trusted."""
    real = tmp_path / "scratch" / "xpnet"
    real.mkdir(parents=True, mode=0o700)
    link = tmp_path / "cache"
    link.symlink_to(real)
    why = _convolve_with_cache(link, tmp_path / "ran")
    assert str(link) in why and "private folder" not in why
    assert [p.suffix for p in real.iterdir()] == [".so"]


def test_the_librarys_name_changes_with_the_sources_the_compiler_and_the_flags(monkeypatch):
    """A build is found by its name: one of other sources or flags is never reused."""
    name = cpu_kernels.library_name("/usr/bin/cc")
    assert name == cpu_kernels.library_name("/usr/bin/cc")
    assert cpu_kernels.library_name("/usr/bin/clang") != name
    assert cpu_kernels.library_name("/usr/bin/cc", flags=["-O2"]) != name
    edited = dict(cpu_kernels.sources())
    first = sorted(edited)[0]
    edited[first] += "\n/* edited */\n"
    monkeypatch.setattr(cpu_kernels, "sources", lambda: edited)
    assert cpu_kernels.library_name("/usr/bin/cc") != name


def test_the_librarys_name_changes_with_the_cpu(monkeypatch):
    """-march=native code runs on the CPU it was built for only: a cache shared between
    machines (a home folder on the network) must find another build on another CPU. The
    signature is the CPU's model name and instruction sets as /proc/cpuinfo lists them,
    where there is one: the model name alone was taken where it came first (x86), and a
    virtual machine's "Intel(R) Xeon(R) Processor" is the name of CPUs with AVX-512 and
    without."""
    signature = cpu_kernels._cpu_signature()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0].splitlines(keepends=True)
        lines = [line for line in first if line.startswith(("flags", "Features", "model name"))]
        if lines:
            assert signature == "".join(lines)
            if any(line.startswith(("flags", "Features")) for line in lines):
                assert "flags" in signature or "Features" in signature
    name = cpu_kernels.library_name("/usr/bin/cc")
    monkeypatch.setattr(cpu_kernels, "_cpu_signature", lambda: signature + " avx512f")
    assert cpu_kernels.library_name("/usr/bin/cc") != name


@needs_kernels
def test_a_compiler_without_march_native_builds_without_it(tmp_path):
    """Some clang targets refuse ``-march=native``: the build is made again without it."""
    real = cpu_kernels.compiler()
    picky = tmp_path / "picky-cc"
    picky.write_text(f"#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -march=native ] && "
                     f"{{ echo 'picky-cc: unsupported -march=native' >&2; exit 1; }}; done\n"
                     f"exec {real} \"$@\"\n")
    picky.chmod(0o755)
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    path = cpu_kernels.build(folder, str(picky))
    assert path.is_file() and path.parent == folder


@needs_kernels
def test_a_trusted_library_of_the_kernels_name_is_loaded(tmp_path):
    """The check is not a refusal of everything: the user's own private build is used
    (here a planted one, which does run: that is what loading means)."""
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    src = cpu_kernels.build(folder, cpu_kernels.compiler())  # the real build, trusted
    marker = tmp_path / "ran"
    why = _convolve_with_cache(folder, marker)
    assert str(src) in why and "private folder" not in why


@needs_kernels
def test_the_library_loaded_is_the_file_judged(tmp_path):
    """The library is judged on the file opened and loaded from that open file (Linux:
    /proc/self/fd), not looked at by its path and then loaded by the path again: between
    the two, whoever may write a folder above the cache could rename the cache folder and
    put another in its place. A file not to be trusted is refused from the open file too."""
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    path = cpu_kernels.build(folder, cpu_kernels.compiler())
    library = cpu_kernels.load_library(path)
    if os.path.isdir("/proc/self/fd"):
        assert library._name.startswith("/proc/self/fd/"), library._name
        mapped = [line.split()[-1] for line in open("/proc/self/maps")]
        assert str(path) in mapped  # the very file, mapped
    path.chmod(0o775)
    with pytest.raises(RuntimeError, match="is writable by its group"):
        cpu_kernels.load_library(path)


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_big_endian_arrays_are_computed_as_their_values(dtype):
    """Data read from a big-endian format (FITS, some HDF5 and MATLAB files) as ``>f4``:
    the kernels chose by dtype name, which is "float32" either way, and read its bytes as
    native floats: pooling and ReLU returned values off by up to 1.0, the convolution by
    46 and NaN gradients, without a word. Such arrays take the array code now (and a
    big-endian dout is read in native order), and give what native ones give."""
    from framework.layers import Convolution, Pooling, Relu
    rng = np.random.default_rng(30)
    big = np.dtype(dtype).newbyteorder(">")
    x = rng.random((64, 16, 32, 32)).astype(dtype)
    W, b = rng.random((8, 16, 3, 3)).astype(dtype), rng.random(8).astype(dtype)
    rtol = 2e-5 if dtype == "float32" else 1e-12  # another summation order, not other numbers
    for make, swapped in ((lambda w, c: Convolution(w, c, pad=1), True),
                          (lambda w, c: Convolution(w, c, pad=1), False),  # dout alone
                          (lambda w, c: Pooling(2, 2, stride=2), True),
                          (lambda w, c: Relu(), True)):
        native, other = make(W, b), make(W.astype(big), b.astype(big)) if swapped \
            else make(W, b)
        out = native.forward(x)
        got = other.forward(x.astype(big) if swapped else x)
        np.testing.assert_allclose(got, out, rtol=rtol, atol=0)
        dout = rng.random(out.shape).astype(dtype)
        np.testing.assert_allclose(other.backward(dout.astype(big)), native.backward(dout),
                                   rtol=rtol, atol=rtol)
