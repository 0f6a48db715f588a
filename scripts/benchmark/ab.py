"""Paired A/B of the framework's cost across commits: ``python -m scripts.benchmark.ab``.

Each commit is unpacked (``git archive``) into a folder of its own; then, round after
round, ``scripts/benchmark/overhead.py`` (this tree's, which runs on every tree since
a633f91) measures each tree in a fresh process, in an order that rotates from round to
round, so that the VM's slow and fast phases fall on every tree alike. Reported for each
measure and tree: the median over rounds, and the median of the per-round ratios to the
last tree (``--commits``' last: by default the working tree, ``.``).

Every tree, the working tree too (its tracked and untracked files, not the ignored ones), is
copied to a folder of the same length (``<tmp>/t0``, ``t1``...), and every process of a round
runs with the same environment padded by the same number of bytes, a number drawn anew
each round: the size of a process's environment and the length of its paths move where its
stack and arrays fall, which moved the NumPy book step by 5-18% between two folders holding
the same code (docs/bench/ab-before-jax-c2d73ad-3.md: the unpacked c2d73ad against the
working tree at c2d73ad), more than the differences measured. Drawn anew each round, the
placement is one more thing the rounds' medians average over, and it falls on every tree
alike within a round.

    python -m scripts.benchmark.ab --commits a633f91,d47c328,fc65c36,. --rounds 7 \\
        --measures tiny,calls,book,numgrad --out docs/ab.md
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import io

from scripts.arguments import check_output, positive
from scripts.benchmark import overhead

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, "scripts", "benchmark", "overhead.py")
#: what each measure reports, and which of its numbers the table's ratio is of
FIELDS = {"tiny": ("xpnet_us", "us"), "book": ("xpnet_us", "us"), "calls": ("calls", ""),
          "numgrad": ("seconds", "s"), "host": ("us", "us")}


def unpack(commit, folder):
    """The tree of ``commit`` in ``folder`` (``.``: this working tree, its tracked and
    untracked files, the ignored ones left out)."""
    if commit == ".":
        listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], check=True, capture_output=True).stdout
        for name in filter(None, listed.decode().split("\0")):
            source = os.path.join(ROOT, name)
            if os.path.isfile(source):  # a deleted, not yet committed file is listed too
                os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
                shutil.copy2(source, os.path.join(folder, name))
        return folder
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run(tree, measure, env, padding):
    done = subprocess.run([sys.executable, PROBE, measure], cwd=tree, capture_output=True,
                          text=True, timeout=1800,
                          env=dict(env, PYTHONPATH=tree, AB_PADDING="x" * padding))
    if done.returncode != 0:
        raise RuntimeError(f"{measure} in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", default="a633f91,d47c328,fc65c36,.",
                   help="trees to compare, the reference last (default: %(default)s)")
    p.add_argument("--measures", default="tiny,calls,book,numgrad",
                   help=f"overhead.py's measures (default: %(default)s; {overhead.PATTERNS} too)")
    p.add_argument("--rounds", type=positive, default=7)
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args(argv)
    commits = args.commits.split(",")
    _check(p, args, commits)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPNET_")}
    results = {}  # (measure, commit) -> [result per round]
    draw = random.Random(0)  # the rounds' paddings: the same in every run of the tool
    with tempfile.TemporaryDirectory() as tmp:
        trees = {c: unpack(c, os.path.join(tmp, f"t{i}")) for i, c in enumerate(commits)}
        for measure in args.measures.split(","):
            for r in range(args.rounds):
                order = commits[r % len(commits):] + commits[:r % len(commits)]
                padding = draw.randrange(4096)
                for c in order:
                    results.setdefault((measure, c), []).append(
                        run(trees[c], measure, env, padding))
                print(f"{measure}: round {r + 1} of {args.rounds}", file=sys.stderr, flush=True)
    text = table(results, commits, args)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def _check(p, args, commits):
    """``p.error`` before any tree is unpacked or timed: an unknown measure, a commit git
    does not know, an ``--out`` that cannot be written (each found at the end before)."""
    for measure in args.measures.split(","):
        try:
            overhead.chosen(measure)
        except ValueError as e:
            p.error(f"argument --measures: {e}")
    for commit in commits:
        if commit != "." and subprocess.run(
                ["git", "-C", ROOT, "rev-parse", "--quiet", "--verify", f"{commit}^{{commit}}"],
                capture_output=True).returncode != 0:
            p.error(f"argument --commits: {commit!r} is not a commit of this repository "
                    f"(expected commits, or . for the working tree, comma-separated)")
    check_output(p, "--out", args.out)


def table(results, commits, args):
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"], capture_output=True,
                           text=True).stdout.strip()
    where = (f" (`.` = the working tree at {head}"
             f"{', with uncommitted changes' if dirty else ''})") if "." in commits else ""
    lines = [f"# Paired A/B: {', '.join(commits)}{where}", "",
             f"`python -m scripts.benchmark.ab --commits {','.join(commits)} --measures "
             f"{args.measures} --rounds {args.rounds}`; each cell the median of {args.rounds} "
             f"rounds, each round a fresh process a tree, in rotating order, every tree copied to a folder of the same length and the round's environment padded alike (a size drawn each round); the ratio is the "
             f"median of the rounds' ratios to `{commits[-1]}`.", ""]
    ref = commits[-1]
    for measure in args.measures.split(","):
        key, unit = FIELDS.get(measure.split(":")[0], ("ms", "ms"))
        extra = " | xpnet / hand-written NumPy" if measure in ("tiny", "book") else ""
        lines += [f"## {measure}", "", f"| tree | {key} | / {ref}{extra} |",
                  f"|---|---:|---:{'|---:' if extra else ''}|"]
        for c in commits:
            values = [r[key] for r in results[(measure, c)]]
            refs = [r[key] for r in results[(measure, ref)]]
            paired = statistics.median(v / w for v, w in zip(values, refs))
            cell = f"| {c} | {statistics.median(values):.4g} {unit} | {paired:.3f} |"
            if extra:
                cell += f" {statistics.median(r['ratio'] for r in results[(measure, c)]):.3f} |"
            lines.append(cell)
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
