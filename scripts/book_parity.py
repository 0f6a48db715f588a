"""xpnet's SimpleConvNet and DeepConvNet against the book's own code, with the book's
trained parameter files: the same scores and the same answers, image by image.

    python scripts/book_parity.py --book PATH/deep-learning-from-scratch [--n 1000]
        [--dataset mnist] [--out REPORT.md]

``--book`` names a checkout of the book's repository (oreilly-japan/deep-learning-from-
scratch): its ``ch07/simple_convnet.py`` and ``ch08/deep_convnet.py`` are imported and
load ``ch07/params.pkl`` and ``ch08/deep_convnet_params.pkl`` their own way (with
``pickle.load``, so only for a checkout you trust), while xpnet's networks load the same
files through ``load_params``, which reads them without running their code. Both score
the first ``--n`` test images on the CPU: the largest difference of their scores
(float64, and float32, xpnet's training dtype), how often their answers agree, and each
one's accuracy.
"""

import argparse
import hashlib
import os
import platform
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402  (host-side: the book's code is NumPy's)

import backends  # noqa: E402
from framework.datasets import DatasetError, load_dataset  # noqa: E402
from framework.files import atomic_open  # noqa: E402
from models import DeepConvNet, SimpleConvNet  # noqa: E402
from scripts.arguments import check_output, positive  # noqa: E402

#: (xpnet's network, the book's module, its class, its parameter file)
NETWORKS = [(SimpleConvNet, "ch07", "simple_convnet", "SimpleConvNet", "params.pkl"),
            (DeepConvNet, "ch08", "deep_convnet", "DeepConvNet", "deep_convnet_params.pkl")]


def book_network(book, chapter, module, name, params):
    """The book's network of ``name``, its trained file loaded by its own ``load_params``."""
    for folder in (os.path.join(book, chapter), book):  # its imports: common.layers...
        if folder not in sys.path:
            sys.path.insert(0, folder)
    import importlib
    net = getattr(importlib.import_module(module), name)()
    net.load_params(os.path.join(book, chapter, params))
    return net


def compare(book, x, t):
    """One row a network: ``(name, float64 max |diff|, float32 max |diff|, agreement, the
    book's accuracy, xpnet's float32 accuracy)``."""
    rows = []
    for ours, chapter, module, name, params in NETWORKS:
        theirs = book_network(book, chapter, module, name, params)
        kwargs = {"train_flg": False} if name == "DeepConvNet" else {}
        y_book = np.asarray(theirs.predict(x.astype(np.float64), **kwargs))
        path = os.path.join(book, chapter, params)
        scores = {}
        for dtype in ("float64", "float32"):
            net = ours(dtype=dtype, seed=0)
            net.load_params(path)
            scores[dtype] = backends.to_numpy(
                net.predict(backends.to_device(x.astype(dtype)), train_flg=False))
        answers = y_book.argmax(axis=1)
        rows.append((name, np.abs(scores["float64"] - y_book).max(),
                     np.abs(scores["float32"] - y_book).max(),
                     float(np.mean(scores["float32"].argmax(axis=1) == answers)),
                     float(np.mean(answers == t)),
                     float(np.mean(scores["float32"].argmax(axis=1) == t))))
    return rows


def _sha256(book, chapter, name):
    with open(os.path.join(book, chapter, name), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _commit(book):
    """The checkout's commit, or what stands for it where it is not a git checkout."""
    done = subprocess.run(["git", "-C", book, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "(not a git checkout)"


def report(args, rows):
    lines = ["# xpnet against the book's code, with the book's trained files", "",
             f"`python scripts/book_parity.py --dataset {args.dataset} --n {args.n}`: the "
             f"first {args.n} test images of {args.dataset}, Python "
             f"{platform.python_version()}, NumPy {np.__version__}, backend "
             f"{backends.current().name}. The book's files were trained on MNIST: on another "
             f"dataset the accuracies say only that both networks answer alike.", "",
             f"The book's code at {_commit(args.book)}; its files: " + "; ".join(
                 f"`{chapter}/{params}` sha256 {_sha256(args.book, chapter, params)}"
                 for _, chapter, _, _, params in NETWORKS) + ".", "",
             "| network | max abs. score diff., float64 | float32 | answers agreeing | "
             "book's accuracy | xpnet's (float32) |", "|---|---:|---:|---:|---:|---:|"]
    for name, d64, d32, agree, acc_book, acc_ours in rows:
        lines.append(f"| {name} | {d64:.3g} | {d32:.3g} | {agree:.4f} | {acc_book:.4f} | "
                     f"{acc_ours:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--book", required=True, metavar="DIR",
                   help="a checkout of oreilly-japan/deep-learning-from-scratch")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir", help="folder holding the IDX files (else the usual search)")
    p.add_argument("--n", type=positive, default=1000, help="test images (default: 1000)")
    p.add_argument("--out", metavar="PATH", help="also write the report to this file")
    args = p.parse_args(argv)
    missing = [os.path.join(chapter, f) for _, chapter, module, _, params in NETWORKS
               for f in (f"{module}.py", params)
               if not os.path.isfile(os.path.join(args.book, chapter, f))]
    if missing:
        p.error(f"--book {args.book}: not a checkout of the book's repository (no "
                f"{', '.join(missing)})")
    check_output(p, "--out", args.out)
    try:
        _, (x_test, t_test) = load_dataset(args.dataset, flatten=False,
                                           data_dir=args.data_dir)
    except DatasetError as e:
        p.exit(1, f"error: {e}\n")
    backends.use("numpy")
    text = report(args, compare(os.path.abspath(args.book), x_test[:args.n],
                                np.asarray(t_test[:args.n])))
    print(text, end="")
    if args.out:
        with atomic_open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
