"""Benchmark: xpnet's training step against the book's loop and PyTorch, side by side.

Times the training step of TwoLayerNet(784, 50, 10) on synthetic MNIST-shaped
data (seeded; no download), float32, at batch 100 (the book's) and 1000, and
the wider 784-1000-10 net of DeZero's GPU example at batch 100, in the variants
scripts/benchmark/variants.py lists (the Trainer on every backend, its eager
and unfused steps on CuPy, a bare loop, the same step hand-written in NumPy,
the book's loop, PyTorch eager).

Each row is timed in repeated windows of one epoch (N / batch steps),
interleaved across rows in a rotating order after a warm-up window, with a
pause between windows so one row's spinning thread pools do not tax the next,
and the median is reported;
on a GPU the clock is read after synchronising. On the CPU xpnet splits its
work across the cores itself (backends/host/), with NumPy's BLAS on one
thread only inside its own convolutional network calls; every NumPy
reference row runs on BLAS's own threads, as it would without xpnet. Peak memory is measured in a
separate process per row (host RSS, including the dataset; GPU: CuPy pool or
PyTorch allocator bytes). Ratios are against the book loop and against
PyTorch on the same device, and, for GPU rows, against xpnet's own CPU step,
measured in the same run. The arithmetic floor is the time of the step's five
matrix products alone, measured here too, and what xpnet's layers and Trainer
add over NumPy alone is given as their paired ratio to numpy-bare.

Then SimpleConvNet and DeepConvNet (--conv-batch, on --conv-n synthetic
images): xpnet's Trainer, the book's code (book.py, float32 weights)
and PyTorch eager with the same layer shapes; on NumPy also the Trainer with the
compiled kernels off (xpnet-im2col: what backends/host's kernels
gain, when a C compiler built it); on CuPy also the eager step, and
the eager step with im2col, col2im and pooling as plain CuPy operations
(xpnet-unfused: what backends/cuda's kernels gain).

The same rows (less the unfused and bare-loop ones) for chapter 6's
MultiLayerNet(784, [100] * 5, 10), with and without batch norm, at batch 100
(--deep-batch): xpnet's Trainer, the same step hand-written in NumPy, the
book's MultiLayerNetExtend loop (book.py) and PyTorch eager.

Also the framework's cost per step (overhead.py: a step of TwoLayerNet(4, 4, 3) at
batch 2, where NumPy's own work is negligible, against the same step hand-written in
NumPy, its Python-level calls, and the book's step against careful hand-written NumPy),
the data check every dataset passes at the door (against one
epoch of the Trainer), the full numerical gradient of TwoLayerNet (batch 3, float64),
vectorised, against the book's element-by-element loop, and the host memory
of evaluating accuracy on the training set.

The Markdown tables come last on stdout; --out also writes them to a file.
--smoke runs a few steps of every row (CI: it checks that every row is
produced, never a time).

The package: nets.py (the networks, as data: how to build each for every
variant), variants.py (the rows), harness.py (interleaved timing, memory
probes), measures.py (the rest), report.py (the tables and the targets),
bare.py (the hand-written NumPy steps), book.py (the book's code), overhead.py (the
framework's cost per step, runnable on older trees), ab.py (a paired A/B of overhead.py's
measures across commits), cli.py. Run ``python -m scripts.benchmark`` or
``python scripts/benchmark.py``.
"""
