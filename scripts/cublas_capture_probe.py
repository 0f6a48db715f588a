"""Whether cuBLAS, called directly, can be recorded in a CUDA graph where CuPy refuses it.

CuPy 14 refuses its own cuBLAS calls while a stream is captured (cupy issue #6290),
so xpnet's CUDA-graph step first multiplied on GEMM kernels of its own, at 1.7-2.6x
cuBLAS's time on DeepConvNet's products (docs/performance.md). cuBLAS itself
allows capture when its handle is bound to the capturing stream and owns a
workspace set beforehand; :mod:`backends.cuda.cublas` makes such a handle through
``ctypes`` over the libcublas CuPy loaded, which the graph step now uses for its large
products (``XPNET_GRAPH_GEMM``; on an H200 on 2026-12-04 it captured). This probe
asks the GPU again:

  1. whether CuPy still refuses ``a @ a`` during capture (the reason for our kernels);
  2. whether cuBLAS's gemm on that handle captures, and whether the replayed graph
     gives CuPy's eager product;
  3. the GPU time of each DeepConvNet product (batch 100, Conv2 and Conv6: forward,
     dW and dcol) as CuPy's eager ``matmul`` and xpnet's own kernel (``ops.gemm``), each
     one launch, and xpnet's kernel and the direct cuBLAS call each replayed in a graph
     of 20: the graph columns compare like with like (the 2026-12-04 report's
     "3.8-12x" set 20 replayed products against one eager call each).

Exits 1 when a capture fails (where CuPy refuses its own, that is the expected answer
and no failure).

    python scripts/cublas_capture_probe.py

Run by ``scripts/gpu_check.sh``.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


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


def main():
    import cupy
    import numpy
    from cupyx.profiler import benchmark

    from backends import ops_for
    import backends
    from backends.cuda import graph

    a = cupy.ones((64, 64), dtype=cupy.float32)
    try:  # CuPy's own call, as the graph step would make it without a handle of ours
        graph.capture(lambda: a @ a, ops_for(a), own_gemm=False)
        print("CuPy", cupy.__version__, "captures its own cuBLAS calls")
    except Exception as e:
        print("CuPy", cupy.__version__, "refuses its cuBLAS calls during capture:",
              type(e).__name__, e)

    blas, why = backends.backend_class("cupy").cublas_handle()  # the graph step's handle
    if blas is None:
        print(f"no cuBLAS handle of our own: {why}")
        raise SystemExit(1)
    rng = numpy.random.default_rng(0)
    repeats = 20

    def replayed_us(body):
        """GPU microseconds a call of ``body`` takes inside a graph that records it
        ``repeats`` times (the way the graph step runs the products), over 5 replays."""
        recorded = graph.capture(lambda: [body() for _ in range(repeats)], ops)
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(5):
            recorded.launch()
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) * 1e3 / (5 * repeats)

    print()
    print("Each product alone, eager (one launch timed by cupyx.profiler.benchmark), and "
          f"inside a CUDA graph that replays it {repeats} times (time per product): the "
          "graph columns compare like with like.")
    print()
    print("| product | CuPy eager us | ours eager us | ours in a graph us | cuBLAS direct in "
          "a graph us | max rel. diff vs CuPy |")
    print("|---|---:|---:|---:|---:|---:|")
    failed = False
    for name, x, y, ta, tb in products(cupy, rng):
        ox, oy = (x.T if ta else x), (y.T if tb else y)
        want = ox @ oy
        eager = benchmark(lambda: ox @ oy, n_repeat=repeats, n_warmup=3).gpu_times.mean()
        ops = ops_for(x)
        ours = benchmark(lambda: ops.gemm(ox, oy), n_repeat=repeats,
                         n_warmup=3).gpu_times.mean()
        try:
            ours_graph = f"{replayed_us(lambda: ops.gemm(ox, oy)):.1f}"
        except Exception as e:
            failed = True
            ours_graph = f"failed: {type(e).__name__}: {e}"
        got = cupy.empty_like(want)
        try:
            direct = f"{replayed_us(lambda: blas.gemm(ox, oy, got)):.1f}"
            got.fill(float("nan"))  # one more product must write every element
            graph.capture(lambda: blas.gemm(ox, oy, got), ops).launch()
            graph.synchronize()
            diff = f"{float(cupy.abs(got - want).max() / cupy.abs(want).max()):.1e}"
        except Exception as e:  # the answer this probe is for: say it, go on
            failed = True
            direct, diff = f"failed: {type(e).__name__}: {e}", "-"
        print(f"| {name} | {eager * 1e6:.1f} | {ours * 1e6:.1f} | {ours_graph} | {direct} "
              f"| {diff} |")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
