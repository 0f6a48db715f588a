"""Timing rows fairly on a noisy machine, and measuring their peak memory.

Each row is timed in repeated windows of one epoch (N / batch steps),
interleaved across rows in a rotating order after a warm-up window, with a
pause between windows so one row's spinning thread pools do not tax the
next; the median is reported. Ratios between two rows are the median of
their per-round ratios (:func:`paired_ratio`). Peak memory is measured in a
separate process per row (host RSS, including the dataset; GPU: CuPy pool
or PyTorch allocator bytes). A row whose library would share its process with
another one's thread pools and allocator (PyTorch's beside JAX's) is timed in a
process of its own, still interleaved (:class:`Apart`).
"""

import hashlib
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
    try:
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
    finally:
        for row in rows:
            row.close()
    for row in rows:
        row.ms = 1e3 * statistics.median(row.times)


class Apart(variants.Row):
    """``row`` (a :data:`variants.VARIANTS` row, not set up) timed in a process of its own,
    which sets it up and times one window each time :meth:`timed` asks, so that the rows
    stay interleaved while no two libraries share a process. In one process PyTorch's CPU
    step ran at less than half its speed beside JAX's (docs/performance.md): their thread
    pools and allocators met there, which they never do in a user's program. ``kind`` is
    the name the tables give the row. The other process makes the row's data again, the
    same seeded samples (:func:`synthetic`, :func:`synthetic_images`; checked by their
    :func:`digest`), and sets the host's allocator as the Trainer does for xpnet's rows."""

    def __init__(self, row, kind=None):
        super().__init__(row.net, row.device, row.batch, row.data)
        self.served = row.key
        self.kind = kind or row.kind
        self.proc = None

    def setup(self):
        # its errors and its rows' progress go to this process's stderr, as they come
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.benchmark", "--serve", self.served,
             "--n", str(self.data[0].shape[0])], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=child_env())
        theirs = self._answer("set up").removeprefix("ready ")
        if theirs != digest(self.data):
            self.close()
            raise RuntimeError(f"{self.served}: its process made other data than this one's "
                               f"(a row timed apart takes the seeded synthetic samples)")

    def timed(self):
        self.proc.stdin.write("time\n")
        self.proc.stdin.flush()
        return float(self._answer("time a window"))

    def _answer(self, what):
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=60)
            raise RuntimeError(f"{self.served}: its process ended (exit status {code}) "
                               f"before it could {what}; its errors are above")
        return line.strip()

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()  # its loop ends at the end of its input
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc = None


def digest(data):
    """A short hash of a row's samples and labels, to check two processes time the same."""
    h = hashlib.sha256()
    for a in data:
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def serve(row_key, n):
    """``--serve``: set up the row ``row_key`` (``kind:device:batch:net``) on ``n`` samples in
    this process, say so on stdout, then time one window for each ``time`` line read from
    stdin, answering each with its seconds, until stdin ends (:class:`Apart`)."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # what the row prints must not mix with the answers
    row = row_of(row_key, n)
    row.setup()
    print("ready", digest(row.data), file=answers, flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            raise ValueError(f"--serve: expected 'time', got {line.strip()!r}")
        print(repr(row.timed()), file=answers, flush=True)
    row.close()


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


def row_of(row_key, n):
    """The row ``row_key`` names (``kind:device:batch:net``, a row's ``key``) on ``n`` of the
    seeded synthetic samples, made in this process (another one's, for ``--probe`` and
    ``--serve``), with the host's allocator set as in the benchmark's own process."""
    kind, device, batch, name = row_key.split(":")
    backends.tune_host_allocator()
    net = nets.by_name(name)
    data = synthetic_images(n) if net.images else synthetic(n)
    return variants.VARIANTS[kind](net, device, int(batch), data)


def child_env(**extra):
    """This process's environment for a row's own process: the tree first on PYTHONPATH."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def torch_sees_cuda():
    """Whether PyTorch is installed and sees a CUDA device, asked of a process of its own:
    importing PyTorch here would put its thread pools and allocator beside the rows of
    this process (what :class:`Apart` keeps apart)."""
    probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=child_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, 3):
        log(f"PyTorch could not be asked for CUDA (exit status {done.returncode}): "
            f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no message'}")
    return done.returncode == 0


def probe_memory(row_key, n, windows=1):
    """Run one row in this process and print its peak memory as JSON (``--probe``)."""
    row = row_of(row_key, n)
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
    env = child_env(XPNET_BACKEND=row.device if row.kind.startswith("xpnet")
                    else os.environ.get("XPNET_BACKEND", "auto"))
    r = subprocess.run([sys.executable, "-m", "scripts.benchmark", "--probe", row.key,
                        "--n", str(n)], capture_output=True, text=True, timeout=600, env=env,
                       cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"memory probe of {row.key} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])
