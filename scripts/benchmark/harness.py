"""Timing rows fairly on a noisy machine, and measuring their peak memory.

Each row is timed in repeated windows of one epoch (N / batch steps),
interleaved across rows in a rotating order after a warm-up window, with a
pause between windows so one row's spinning thread pools do not tax the
next; the median is reported. Ratios between two rows are the median of
their per-round ratios (:func:`paired_ratio`). Peak memory is measured in a
separate process per row (host RSS, including the dataset; GPU: CuPy pool
or PyTorch allocator bytes).
"""

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import backends
from scripts.benchmark import nets, variants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def synthetic(n, seed=0):
    """``n`` MNIST-shaped samples, seeded (no download): float32 pixels, uint8 labels."""
    rng = np.random.default_rng(seed)
    return rng.random((n, nets.SIZES[0]), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


def synthetic_images(n, seed=0):
    x, t = synthetic(n, seed)
    return x.reshape(n, 1, 28, 28), t


def time_rows(rows, repeats, pause):
    for row in rows:
        log(f"  setting up {row.key}")
        row.setup()
        row.timed()  # warm-up: first-call costs, allocator, BLAS threads
    for r in range(repeats):
        # Interleaved, so drift hits every row alike, and rotated, so no row always
        # follows the same one. Worker threads of OpenBLAS and PyTorch's OpenMP
        # busy-wait for a while after their work, taking a core from whatever
        # runs next: the pause lets them go to sleep first.
        for row in rows[r % len(rows):] + rows[:r % len(rows)]:
            time.sleep(pause)
            row.times.append(row.timed() / row.steps)
        log(f"  round {r + 1}/{repeats} done")
    for row in rows:
        row.ms = 1e3 * statistics.median(row.times)


def emit(lines, out=None):
    """Print a table's lines, and write them to ``out`` too (atomically) where given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        from framework.files import atomic_open
        with atomic_open(out, "w") as f:
            f.write(text)


def paired_ratio(numerator, denominator):
    """Median over rounds of numerator's time / denominator's, both from the same round.

    Rows of one round ran seconds apart, so a slow patch of the machine
    (shared cores, a noisy neighbour) moves both; the per-round ratio is
    steadier than a ratio of medians.
    """
    return statistics.median(a / b for a, b in zip(numerator.times, denominator.times))


def probe_memory(row_key, n, windows=1):
    """Run one row in this process and print its peak memory as JSON (``--probe``)."""
    kind, device, batch, name = row_key.split(":")
    backends.tune_host_allocator()
    net = nets.by_name(name)
    data = synthetic_images(n) if net.images else synthetic(n)
    row = variants.VARIANTS[kind](net, device, int(batch), data)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS mark: measure the row, not the data generation
    except OSError:
        pass  # not Linux: the peak then includes generating the data
    row.setup()
    for _ in range(windows):
        row.timed()
    try:
        with open("/proc/self/status") as f:
            rss_mb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except OSError:
        import resource  # not Linux: the process's lifetime peak
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = row.gpu_bytes()
    print(json.dumps({"rss_mb": rss_mb, "gpu_mb": None if gpu is None else gpu / 2**20}))


def memory_of(row, n):
    """``{"rss_mb", "gpu_mb"}`` of ``row``, run alone in a fresh process."""
    env = dict(os.environ, XPNET_BACKEND=row.device if row.kind.startswith("xpnet")
               else os.environ.get("XPNET_BACKEND", "auto"))
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([sys.executable, "-m", "scripts.benchmark", "--probe", row.key,
                        "--n", str(n)], capture_output=True, text=True, timeout=600, env=env,
                       cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"memory probe of {row.key} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])
