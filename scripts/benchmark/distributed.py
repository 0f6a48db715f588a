"""What data parallelism costs and gains: the gradient sum against the step, and the
step's time on 1 process against N ranks.

    python -m scripts.benchmark.distributed [--model deep] [--ranks 2] [--out FILE]

runs, interleaved over ``--rounds`` rounds with a pause between runs, one process
with one thread (BLAS's too), one process with ``--ranks`` threads (xpnet's own host
threads) and ``--ranks`` processes of one thread each under ``mpiexec``, each on the same
synthetic data at the same global batch, and reports the median step of each and
the time of one gradient sum (the communicator's ``all_reduce`` on a buffer of the
network's parameter count). ``XPNET_BACKEND=cupy`` times the GPU instead: ranks
share it over MPI through the host on a machine with one GPU, and sum over NCCL
with one GPU a rank where there are enough.

Each run is a worker (``--worker``): it trains a warm-up window and then
``--windows`` windows of ``--steps`` steps with the Trainer, and prints one JSON line
from rank 0.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from scripts.arguments import check_output, non_negative_seconds, positive

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = {"two-layer": "50", "simple": "simple", "deep": "deep"}  # -> nets.by_name


def worker(args):
    """One run: the median step and gradient sum, printed by rank 0 as JSON."""
    import backends
    from framework import distributed
    from framework.trainer import Trainer
    from scripts.benchmark import harness, nets

    world = distributed.world()
    net = nets.by_name(MODELS[args.model])  # the benchmark's networks and synthetic data
    network = net.xpnet()
    n = args.batch * args.steps
    x, t = harness.synthetic_images(n) if net.images else harness.synthetic(n)
    # each window is an epoch, whose report evaluates: on one sample, so that the windows
    # time the steps (ranks evaluate in shards, which would flatter them)
    trainer = Trainer(network, x, t, x[:1], t[:1], epochs=1,
                      mini_batch_size=args.batch, optimizer="SGD",
                      optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=1,
                      verbose=False, seed=0)
    trainer.train(epochs=1)  # warm-up: kernels built, memory allocated
    steps = []
    for _ in range(args.windows):
        trainer.backend.synchronize()
        world.communicator.barrier()
        start = time.perf_counter()
        trainer.train(epochs=1)
        trainer.backend.synchronize()
        steps.append((time.perf_counter() - start) / args.steps)
    count = sum(backends.size(p) for p in network.params.values())
    flat = trainer.backend.full((count + 1,), 0.5, dtype="float32")
    sums = []
    for _ in range(args.sums):
        world.communicator.barrier()
        start = time.perf_counter()
        trainer.communicator.all_reduce(flat)
        trainer.backend.synchronize()
        sums.append(time.perf_counter() - start)
    if world.is_root:
        print(json.dumps({"step_ms": 1e3 * statistics.median(steps),
                          "sum_ms": 1e3 * statistics.median(sums) if world.size > 1 else 0.0,
                          "bytes": 4 * (count + 1), "ranks": world.size,
                          "backend": trainer.backend.description,
                          "how": f"{trainer.communicator.name}: {trainer.communication}"}),
              flush=True)


def mpiexec():
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
        shutil.which("mpiexec")


def run(label, ranks, threads, args):
    """One worker run (under mpiexec when ``ranks`` > 1): its JSON."""
    command = [sys.executable, "-m", "scripts.benchmark.distributed", "--worker",
               "--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps),
               "--windows", str(args.windows), "--sums", str(args.sums)]
    if ranks > 1:
        command = [mpiexec(), "-n", str(ranks)] + command
    from backends import mpi_env
    env = mpi_env.outside_launcher()  # each run a job of its own
    env["XPNET_HOST_THREADS"] = str(threads)
    if threads == 1:  # BLAS too: two ranks' BLAS pools would fight over the same cores
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.benchmark.distributed",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="deep")
    p.add_argument("--ranks", type=int, default=2, help="processes (default: %(default)s)")
    p.add_argument("--batch", type=positive, default=100, help="the global batch")
    p.add_argument("--steps", type=positive, default=10, help="steps a window")
    p.add_argument("--windows", type=positive, default=3, help="timed windows a run")
    p.add_argument("--sums", type=positive, default=50, help="timed gradient sums a run")
    p.add_argument("--rounds", type=positive, default=3, help="interleaved rounds of all runs")
    p.add_argument("--pause", type=non_negative_seconds, default=1.0, help="seconds between runs")
    p.add_argument("--out", metavar="FILE", help="also write the Markdown table here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    check_output(p, "--out", args.out)  # before the run, not after it
    if args.worker:
        return worker(args)
    if args.ranks < 2:
        p.error(f"--ranks must be at least 2, got {args.ranks}")
    if mpiexec() is None:
        raise SystemExit("no mpiexec here: pip install 'xpnet[distributed]' (mpi4py and MPICH)")
    r = args.ranks
    if os.environ.get("XPNET_BACKEND", "auto") in ("numpy", "auto", "array_api_strict"):
        runs = [("1 process, 1 thread", 1, 1), (f"1 process, {r} threads", 1, r),
                (f"{r} ranks, 1 thread each", r, 1)]
    else:  # a GPU does the arithmetic: host threads are beside the point
        runs = [("1 process", 1, 1), (f"{r} ranks", r, 1)]
    results = {label: [] for label, _, _ in runs}
    for round_ in range(args.rounds):
        for label, ranks, threads in runs[round_ % len(runs):] + runs[:round_ % len(runs)]:
            results[label].append(run(label, ranks, threads, args))
            print(f"round {round_ + 1}: {label}: {results[label][-1]['step_ms']:.2f} ms a step",
                  file=sys.stderr, flush=True)
            time.sleep(args.pause)
    text = table(results, runs, args)
    print(text)
    if args.out:
        from framework.files import atomic_open
        with atomic_open(args.out, "w") as f:
            f.write(text + "\n")


def table(results, runs, args):
    base = statistics.median(x["step_ms"] for x in results[runs[0][0]])
    backend = results[runs[0][0]][-1]["backend"]
    lines = [f"{args.model}, global batch {args.batch}, float32, on {backend}; "
             f"medians of {args.rounds} runs ({args.windows} windows of {args.steps} steps "
             f"each)", "",
             "| run | step, ms | speed vs 1 thread | gradient sum, ms | sum / step | how |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for label, ranks, _ in runs:
        step = statistics.median(x["step_ms"] for x in results[label])
        summed = statistics.median(x["sum_ms"] for x in results[label])
        how = results[label][-1]["how"]
        lines.append(f"| {label} | {step:.2f} | {base / step:.2f}x | "
                     f"{summed:.3f} | {100 * summed / step:.1f}% | "
                     f"{how if ranks > 1 else '-'} |")
    size = results[runs[-1][0]][-1]["bytes"]
    lines += ["", f"The gradient sum moves one flat float32 buffer of {size / 1e6:.2f} MB a "
              f"step."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
