"""The gradient all-reduce's two forms against the world's size: time and elements sent.

    python -m scripts.benchmark.allreduce [--ranks 2,3,4,6,8] [--repeats 21] [--out FILE]

For each world size, ``mpiexec -n N`` runs this module as a worker (``--worker``), which
all-reduces float32 buffers of the book's networks' sizes (TwoLayerNet, DeepConvNet,
SimpleConvNet) and of 100 MB, each in both forms of
:meth:`framework.distributed.MpiCommunicator.all_reduce`: every rank's whole buffer
gathered, and the chunked one (each rank adds every rank's part of its chunk, the chunks
gathered). It reports the median time (after a barrier, the slowest rank's) and the
elements each rank sent, per element of the buffer. On one machine with fewer cores
than ranks (oversubscribed) the times say more about the cores than the network; the
counts are what carries over.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from scripts.arguments import check_output, positive

SIZES = {"TwoLayerNet": 39760, "DeepConvNet": 123552, "SimpleConvNet": 433890,
         "100 MB": 25 * 1000 * 1000}


def worker(repeats):
    import numpy as np
    from framework import distributed
    world = distributed.world()
    c = world.communicator
    rows = []
    for name, n in SIZES.items():
        flat = np.full(n + 1, 0.5, dtype=np.float32)
        for form, up_to in (("gathered", world.size), ("chunked", 1)):
            c.gather_up_to = up_to
            times = []
            count = max(3, repeats // 4) if n > 10**7 else repeats
            for _ in range(count):
                c.barrier()
                before, start = c.sent, time.perf_counter()
                c.all_reduce(flat)
                elapsed = c.comm.allreduce(time.perf_counter() - start, op=c.MPI.MAX)
                times.append(elapsed)
                sent = c.sent - before
            most = c.comm.allreduce(sent, op=c.MPI.MAX)
            rows.append({"buffer": name, "elements": n + 1, "form": form,
                         "ms": 1e3 * statistics.median(times), "sent_per_element": most / (n + 1)})
    if world.is_root:
        print(json.dumps({"ranks": world.size, "rows": rows}), flush=True)


def rank_counts(text):
    """argparse type of ``--ranks``: world sizes of 2 or more, comma-separated."""
    try:
        counts = [int(r) for r in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 2:
        raise argparse.ArgumentTypeError(f"expected world sizes of 2 or more, comma-separated, "
                                         f"got {text!r}")
    return counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=rank_counts, default="2,3,4,6,8",
                   help="world sizes to time, comma-separated (default: %(default)s)")
    p.add_argument("--repeats", type=positive, default=21)
    p.add_argument("--out")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    check_output(p, "--out", args.out)
    if args.worker:
        worker(args.repeats)
        return
    from backends.mpi_env import outside_launcher
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
        shutil.which("mpiexec")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(outside_launcher(), PYTHONPATH=root, XPNET_HOST_THREADS="1")
    results = []
    for n in args.ranks:
        done = subprocess.run([mpiexec, "-n", str(n), sys.executable, "-m",
                               "scripts.benchmark.allreduce", "--worker", "--repeats",
                               str(args.repeats)], cwd=root, env=env, capture_output=True,
                              text=True, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"{n} ranks failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{n} ranks done", file=sys.stderr, flush=True)
    lines = ["| ranks | buffer | form | ms | elements sent a rank, per element |",
             "|---:|---|---|---:|---:|"]
    for result in results:
        for row in result["rows"]:
            lines.append(f"| {result['ranks']} | {row['buffer']} ({row['elements']}) | "
                         f"{row['form']} | {row['ms']:.3f} | {row['sent_per_element']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
