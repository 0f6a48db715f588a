"""5.7.3: check backprop against numerical differentiation (book: ch05/gradient_check.py).

Builds TwoLayerNet(784, 50, 10) in float64, takes the first 3 training
samples of the dataset (as the book does; ``--data random`` for seeded random
inputs of MNIST's shape instead) and prints, per parameter, the mean absolute difference between the two
gradients in the book's ``W1:<diff>`` form, followed by the largest relative
error.

``--dtype float32`` checks the gradients a run trains with: the float32
network's backprop against the float64 numerical gradient at the same weights
and inputs (the float32 values, widened). Central differences in float32
itself measure only float32's rounding of the loss (about 1e-3 an element
with the book's h = 1e-4), not the backprop.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backends  # noqa: E402
from backends import mpi_env  # noqa: E402
from framework.datasets import DatasetError, load_dataset  # noqa: E402
from framework.gradient import gradient_check  # noqa: E402
from models import TwoLayerNet  # noqa: E402
from scripts.arguments import non_negative_seed  # noqa: E402


def random_batch(seed):
    """Three seeded samples of MNIST's shape: pixels in [0, 1), labels 0..9."""
    rng = backends.host_rng(seed)
    return rng.random((3, 784)), rng.integers(0, 10, size=3).astype("int64")


def dataset_batch(name):
    """The first 3 training samples, as in the book's gradient_check.py."""
    (x_train, t_train), _ = load_dataset(name, normalize=True, one_hot_label=True)
    return x_train[:3], t_train[:3]


def check(backend_name, x, t, seed, dtype, device=None):
    """The check on one backend; in float64 where the library keeps it behind a switch
    (JAX's ``jax_enable_x64``, on for the check alone, then as it was)."""
    backend = backends.use(backend_name, device=device)
    with backend.with_float64():
        return _check(backend, x, t, seed, dtype)


def _check(backend, x, t, seed, dtype):
    xp = backend.xp
    network = TwoLayerNet(input_size=784, hidden_size=50, output_size=10, dtype="float64",
                          seed=seed)
    trained = None
    if dtype != "float64":  # the float32 network's weights and inputs, widened for the reference
        trained = TwoLayerNet(input_size=784, hidden_size=50, output_size=10, dtype=dtype,
                              seed=seed)
        for key, p in list(network.params.items()):
            network.params[key] = xp.astype(trained.params[key], p.dtype)
        x = x.astype(dtype)  # host data, rounded as the float32 run sees it
    xb, tb = backend.asarray(x, "float64"), backend.asarray(t)
    start = time.perf_counter()
    result = gradient_check(network, xb, tb, backprop=trained)
    seconds = time.perf_counter() - start
    what = "float64" if trained is None else f"{dtype} backprop against float64 numerical"
    print(f"# backend {backend.name} ({backend.description}), {what}, {seconds:.2f} s")
    for key, (mean_abs, _) in result.items():
        print(f"{key}:{mean_abs}")
    worst = max(result, key=lambda k: result[k][1])
    print(f"# largest relative error: {result[worst][1]:.3g} ({worst})")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all-backends", action="store_true",
                        help="check every backend available here, not only the current one")
    parser.add_argument("--backend", choices=backends.CHOICES,
                        help="backend to check (default: XPNET_BACKEND, else auto)")
    parser.add_argument("--data", choices=["dataset", "random"], default="dataset",
                        help="where the 3 samples come from (default: %(default)s)")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"],
                        help="dataset for --data dataset (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_seed, default=0,
                        help="seed of weights and random data")
    parser.add_argument("--device", help="the backend's device (e.g. --backend torch --device "
                                              "cpu on a Mac: MPS has no float64)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="precision of the backprop checked (default: %(default)s; float32 against a "
                             "float64 numerical gradient)")
    args = parser.parse_args(argv)
    job = mpi_env.launched()
    if job is not None and job.rank > 0:  # under mpiexec: a check, not a run to share out;
        return                            # rank 0 makes it once
    if args.data == "random":
        x, t = random_batch(args.seed)
    else:
        try:
            x, t = dataset_batch(args.dataset)
        except DatasetError as e:
            parser.exit(1, f"error: {e}\n(or run with --data random)\n")
    if args.all_backends:
        names = backends.available()
    else:
        names = [args.backend or backends.current().name]
    for name in names:
        try:
            check(name, x, t, args.seed, args.dtype, None if args.all_backends else args.device)
        except (TypeError, RuntimeError) as e:  # no float64 on the device, a bad device
            if not args.all_backends:
                parser.exit(2, f"error: {e}\n")
            # every backend here: one without float64 (a device that has none) is named,
            # and the others checked
            print(f"# backend {name}: not checked: {e}")


if __name__ == "__main__":
    main()
