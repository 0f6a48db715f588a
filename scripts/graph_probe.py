"""The CUDA-graph step's levers on a GPU, one by one, at the benchmark's sizes.

For each hidden:batch pair, times 600 steps (median of 5 windows, clock read
after a synchronize) of:

  eager-unfused  plain CuPy operations, one launch each (XPNET_FUSED=0's path)
  eager-fused    the fused kernels of backends.cuda.ops
  graph-own      the step replayed as a CUDA graph, products on our GEMM kernel
  graph-cublas   the same graph recorded with cuBLAS's products, where this
                 CuPy and cuBLAS allow capturing them (else the error is shown)

and the largest difference of the final parameters from the eager-fused run
started from the same weights and batches. Prints a Markdown table, then the
host-side profile of the eager-fused step (cProfile, the functions where the
Python time goes: the eager step is bound by launches and the host), then
the GPU time of each operation of the book's step (784-50-10, batch 100),
ours against cuBLAS and plain CuPy, from cupyx.profiler.benchmark: where
the graph step's time goes; then the same for Adam's fused update and for
DeepConvNet's convolution products at batch 100 (the tile GEMM, dW's long K
cut into slices, against cuBLAS), and those products on the tile kernel's
other tiles (backends.cuda.gemm.TILES: rows x columns of C a thread), to choose the
default from.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import backends  # noqa: E402
from backends.cuda import gemm as gemm_kernels  # noqa: E402
from backends import ops_for  # noqa: E402
from framework.data import DeviceBatches  # noqa: E402
from framework.optimizers import SGD  # noqa: E402
from models import TwoLayerNet  # noqa: E402


def run(variant, hidden, batch, data, windows, steps):
    backend = backends.current()
    net = TwoLayerNet(784, hidden, 10, seed=0)
    batches = DeviceBatches(*data, batch, seed=0, backend=backend)
    optimizer = SGD(lr=0.1)
    times = []
    with backends.configured(fused=variant != "eager-unfused"):
        if variant.startswith("graph"):
            from framework.steps import GraphStep
            step = GraphStep(net, optimizer, batches,
                             own_gemm=variant.split("-")[1] == "own").record()
            for _ in range(windows + 1):
                step.start_epoch(batches.start_epoch())
                backend.synchronize()
                start = time.perf_counter()
                for _ in range(steps):
                    step.graph.launch()
                backend.synchronize()
                times.append((time.perf_counter() - start) / steps)
        else:
            for _ in range(windows + 1):
                order = batches.start_epoch()
                backend.synchronize()
                start = time.perf_counter()
                for i in range(steps):
                    optimizer.update(net.params, net.gradient(*batches.batch(order, i)))
                backend.synchronize()
                times.append((time.perf_counter() - start) / steps)
    params = {k: backends.to_numpy(v) for k, v in net.params.items()}
    return 1e3 * statistics.median(times[1:]), params


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="50:100,50:1000,1000:100")
    p.add_argument("--windows", type=int, default=5)
    args = p.parse_args()
    backends.use("cupy")
    rng = np.random.default_rng(0)
    data = rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000).astype(np.uint8)
    print("| hidden | batch | variant | ms/step | vs eager-unfused | max param diff vs eager-fused |")
    print("|---:|---:|---|---:|---:|---:|")
    for config in args.configs.split(","):
        hidden, batch = (int(v) for v in config.split(":"))
        steps = min(600, 60000 // batch)
        results = {}
        for variant in ("eager-unfused", "eager-fused", "graph-own",
                        "graph-cublas"):
            try:
                results[variant] = run(variant, hidden, batch, data, args.windows, steps)
            except Exception as e:
                print(f"| {hidden} | {batch} | {variant} | failed: {type(e).__name__}: "
                      f"{str(e).splitlines()[0][:150]} | - | - |", flush=True)
        base = results.get("eager-unfused", (None,))[0]
        ref = results.get("eager-fused", (None, None))[1]
        for variant, (ms, params) in results.items():
            diff = max(float(np.abs(params[k] - ref[k]).max()) for k in ref) if ref else None
            print(f"| {hidden} | {batch} | {variant} | {ms:.4f} | "
                  f"{'-' if base is None else f'{base / ms:.2f}x'} | "
                  f"{'-' if diff is None else f'{diff:.1e}'} |", flush=True)
    host_profile(data)
    operation_times()


def host_profile(data, steps=300, top=15):
    """Where the eager step's host time goes: cProfile over ``steps`` steps of the book's
    net, the functions with the most time of their own."""
    import cProfile
    import pstats
    backend = backends.current()
    net = TwoLayerNet(784, 50, 10, seed=0)
    batches = DeviceBatches(*data, 100, seed=0, backend=backend)
    optimizer = SGD(lr=0.1)
    order = batches.start_epoch()
    for i in range(20):  # kernels built, memory pooled
        optimizer.update(net.params, net.gradient(*batches.batch(order, i)))
    backend.synchronize()
    profile = cProfile.Profile()
    profile.enable()
    for i in range(steps):
        optimizer.update(net.params, net.gradient(*batches.batch(order, i % len(batches))))
    backend.synchronize()
    profile.disable()
    stats = pstats.Stats(profile)
    total = stats.total_tt
    print(f"\nHost time of the eager-fused step (784-50-10, batch 100; cProfile over {steps} "
          f"steps: {1e3 * total / steps:.3f} ms a step with the profiler's own cost)\n")
    print("| function | calls a step | own us a step | with callees, us a step |")
    print("|---|---:|---:|---:|")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    for (path, line, name), (_, calls, own, cumulative, _) in rows:
        inside = os.path.abspath(path).startswith(ROOT + os.sep)
        where = f"{os.path.relpath(path, ROOT) if inside else os.path.basename(path)}:{line}" \
            if line else path
        print(f"| {name} ({where}) | {calls / steps:.1f} | {1e6 * own / steps:.1f} | "
              f"{1e6 * cumulative / steps:.1f} |")


def operation_times(repeat=200):
    import cupy
    from cupyx.profiler import benchmark
    ops = ops_for(cupy.zeros(1))
    rng = np.random.default_rng(1)

    def arr(*shape):
        return cupy.asarray(rng.standard_normal(shape), dtype=cupy.float32)
    x, w1, b1, w2, b2 = arr(100, 784), arr(784, 50), arr(50), arr(50, 10), arr(10)
    h, d1, s2 = arr(100, 50), arr(100, 50), arr(100, 10)
    t = cupy.asarray(rng.integers(0, 10, 100), dtype=cupy.uint8)
    rows = cupy.arange(100)
    _, y, labels = ops.softmax_cross_entropy(s2, t, rows)
    d1w, m1, v1 = arr(784, 50), cupy.zeros((784, 50), cupy.float32), cupy.ones((784, 50),
                                                                            cupy.float32)
    _, lr_t = ops.adam_step_size(cupy.zeros((), cupy.float64), 0.001, 0.9, 0.999)
    cases = [
        ("x W1 + b1 (100x784 @ 784x50)", lambda: ops.gemm(x, w1, b1),
         lambda: x @ w1 + b1),
        ("h W2 + b2 (100x50 @ 50x10)", lambda: ops.gemm(h, w2, b2), lambda: h @ w2 + b2),
        ("dW2 = h^T d2 (50x100 @ 100x10)", lambda: ops.gemm(h.T, s2), lambda: h.T @ s2),
        ("dh = d2 W2^T (100x10 @ 10x50)", lambda: ops.gemm(s2, w2.T), lambda: s2 @ w2.T),
        ("dW1 = x^T d1 (784x100 @ 100x50)", lambda: ops.gemm(x.T, d1), lambda: x.T @ d1),
        ("db = sum_n dout (100x50)", lambda: d1.sum(axis=0), None),
        ("relu: output and mask", lambda: ops.relu(h), lambda: (h * (h > 0), h > 0)),
        ("softmax + cross-entropy", lambda: ops.softmax_cross_entropy(s2, t, rows),
         lambda: super(type(ops), ops).softmax_cross_entropy(s2, t, rows)),
        ("its gradient", lambda: ops.softmax_cross_entropy_grad(y, labels, 0.01, rows),
         lambda: super(type(ops), ops).softmax_cross_entropy_grad(y, labels, 0.01, rows)),
        ("SGD update of W1", lambda: ops.sgd_update(w1, w1, 0.0), lambda: w1.__isub__(0.0 * w1)),
        ("Adam update of W1", lambda: ops.adam_update(w1, d1w, m1, v1, lr_t, 0.9, 0.999),
         lambda: super(type(ops), ops).adam_update(w1, d1w, m1, v1, lr_t, 0.9, 0.999)),
    ]
    # DeepConvNet's largest and smallest-K products at batch 100, as its layers call them:
    # the tile kernel (K cut into slices for dW) against cuBLAS
    for name, (fn, ck, p) in {"Conv2": (16, 144, 78400), "Conv6": (64, 576, 4900)}.items():
        wc, col, d = arr(fn, ck), arr(ck, p), arr(fn, p)
        cases += [
            (f"{name} forward W_col col ({fn}x{ck} @ {ck}x{p})",
             lambda wc=wc, col=col: ops.gemm(wc, col), lambda wc=wc, col=col: wc @ col),
            (f"{name} dW = (col d^T)^T ({ck}x{p} @ {p}x{fn})",
             lambda col=col, d=d: ops.gemm(col, d.T), lambda col=col, d=d: col @ d.T),
            (f"{name} dW on the block kernel (the tile kernel's predecessor)",
             lambda col=col, d=d: ops.gemm(col, d.T, kernel="block"), None),
            (f"{name} dcol = W_col^T d ({ck}x{fn} @ {fn}x{p})",
             lambda wc=wc, d=d: ops.gemm(wc.T, d), lambda wc=wc, d=d: wc.T @ d),
        ]
        for tile in [t for t in gemm_kernels.TILES if t != (gemm_kernels.TILE,) * 2]:
            label = f"tile {tile[0]}x{tile[1]}"
            cases += [
                (f"{name} forward, {label}",
                 lambda wc=wc, col=col, tile=tile: ops.gemm(wc, col, tile=tile), None),
                (f"{name} dW, {label}",
                 lambda col=col, d=d, tile=tile: ops.gemm(col, d.T, tile=tile), None),
                (f"{name} dcol, {label}",
                 lambda wc=wc, d=d, tile=tile: ops.gemm(wc.T, d, tile=tile), None),
            ]
    print("\n| operation (book's step) | ours, us GPU | cuBLAS / plain CuPy, us GPU |")
    print("|---|---:|---:|")
    for name, ours, plain in cases:
        times = []
        for fn in (ours, plain):
            if fn is None:
                times.append("-")
                continue
            # the conv products take up to a millisecond: fewer repeats keep the probe short
            repeats = (10 if ", tile " in name else 30) if name.startswith("Conv") else repeat
            r = benchmark(fn, n_repeat=repeats, n_warmup=3)
            times.append(f"{1e6 * float(np.median(r.gpu_times[0])):.1f}")
        print(f"| {name} | {times[0]} | {times[1]} |", flush=True)


if __name__ == "__main__":
    main()
