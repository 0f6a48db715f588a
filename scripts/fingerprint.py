"""Fingerprints of what xpnet computes: a hash per result, to prove a restructuring changed none.

``python -m scripts.fingerprint [--backends numpy,array_api_strict] [--out FILE]`` prints
one line per result, ``name hash`` (a SHA-256's first 24 hex digits): every model's
initial parameters, gradient (float32 and float64), predictions and vectorised numerical
gradient; for every optimizer, two
epochs of the Trainer on MultiLayerNetExtend (batch norm, dropout, weight decay) --
its losses, final parameters, layer state and the arrays of the checkpoint it wrote;
and a SimpleConvNet and a DeepConvNet run. Data are seeded synthetic arrays: nothing is
downloaded. Run it on two commits and ``diff`` the outputs: any line that differs is a
result that changed (bit for bit: the hashes are of the raw bytes).

It uses only the public API (``backends.use``, the models, the optimizers, the Trainer,
``save_params``), so the same file runs on older trees, as the tool that checked the
last restructuring did.
"""

import argparse
import hashlib
import os
import sys
import tempfile

import numpy as np

if __package__ in (None, ""):  # python scripts/fingerprint.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backends  # noqa: E402
from framework.trainer import Trainer  # noqa: E402
from models import (DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet,  # noqa: E402
                    TwoLayerNet)

OPTIMIZERS = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")


def digest(*arrays):
    """sha256 of the arrays' dtypes, shapes and bytes, in order (host copies)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(backends.to_numpy(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def by_name(d):
    return [d[k] for k in sorted(d)]


def data(n, shape, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape).astype(np.float32), rng.integers(0, classes, n)


def models(dtype):
    """(name, network) for every model, small enough for array-api-strict."""
    return [
        ("two-layer", TwoLayerNet(20, 8, 10, seed=0, dtype=dtype)),
        ("multi-layer", MultiLayerNet(20, [8, 8], 10, weight_decay_lambda=0.1, seed=0,
                                      dtype=dtype)),
        ("multi-layer-extend", MultiLayerNetExtend(
            20, [8, 8], 10, weight_decay_lambda=0.1, use_dropout=True, dropout_ration=0.2,
            use_batchnorm=True, seed=0, dtype=dtype)),
        ("simple-convnet", SimpleConvNet(
            (1, 10, 10), {"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1},
            hidden_size=8, seed=0, dtype=dtype)),
        ("deep-convnet", DeepConvNet((1, 28, 28), hidden_size=8, seed=0, dtype=dtype)),
    ]


def network_lines(name):
    lines = []
    for dtype in ("float32", "float64"):
        for model, net in models(dtype):
            shape = (1, 28, 28) if model == "deep-convnet" else \
                (1, 10, 10) if model == "simple-convnet" else (20,)
            x, t = data(4, shape)
            x, t = backends.to_device(x, dtype), backends.to_device(t)
            tag = f"{name} {model} {dtype}"
            lines.append(f"{tag} params {digest(*by_name(net.params))}")
            grads = net.gradient(x, t)
            lines.append(f"{tag} gradient {digest(*by_name(grads), net.last_loss)}")
            lines.append(f"{tag} predict {digest(net.predict(x))}")
            if dtype == "float64" and model != "deep-convnet":
                lines.append(f"{tag} numerical_gradient "
                             f"{digest(*by_name(net.numerical_gradient(x, t)))}")
    return lines


def trainer_lines(name, folder):
    lines = []
    x, t = data(60, (20,), seed=1)
    xt, tt = data(20, (20,), seed=2)
    for opt in OPTIMIZERS:
        net = MultiLayerNetExtend(20, [8, 8], 10, weight_decay_lambda=0.05, use_dropout=True,
                                  dropout_ration=0.2, use_batchnorm=True, seed=3)
        path = os.path.join(folder, f"{name}-{opt}.npz")
        trainer = Trainer(net, x, t, xt, tt, epochs=2, mini_batch_size=16, optimizer=opt,
                          optimizer_param={"lr": 0.01}, verbose=False, seed=4, checkpoint=path)
        trainer.train()
        tag = f"{name} trainer {opt}"
        lines.append(f"{tag} losses {digest(np.asarray(trainer.train_loss_list))}")
        lines.append(f"{tag} accuracies "
                     f"{digest(np.asarray(trainer.train_acc_list + trainer.test_acc_list))}")
        lines.append(f"{tag} params {digest(*by_name(net.params))}")
        lines.append(f"{tag} state {digest(*by_name(net.state()))}")
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k != "meta"}
        lines.append(f"{tag} checkpoint {digest(*by_name(arrays))}")
    for model, shape in (("simple-convnet", (1, 10, 10)), ("deep-convnet", (1, 28, 28))):
        net = dict(models("float32"))[model]
        x, t = data(24, shape, seed=5)
        trainer = Trainer(net, x, t, x[:8], t[:8], epochs=1, mini_batch_size=8,
                          optimizer="Adam", verbose=False, seed=6)
        trainer.train()
        lines.append(f"{name} trainer {model} "
                     f"{digest(np.asarray(trainer.train_loss_list), *by_name(net.params))}")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="numpy,array_api_strict",
                   help="comma-separated backends (default: %(default)s)")
    p.add_argument("--out", help="also write the lines to this file")
    args = p.parse_args(argv)
    if args.out and (os.path.isdir(args.out) or not os.path.isdir(os.path.dirname(
            os.path.abspath(args.out)))):  # (no scripts.arguments: older trees lack it)
        p.error(f"--out {args.out}: a folder, or in a folder that does not exist")
    names = [n.strip() for n in args.backends.split(",")]
    for name in names:  # every one before the first is fingerprinted
        try:
            backends.use(name)
        except (ValueError, RuntimeError) as e:
            p.error(f"--backends: {e}")
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            backends.use(name)
            lines += network_lines(name)
            lines += trainer_lines(name, folder)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
