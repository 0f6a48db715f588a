"""A data-parallel training run for tests/framework/test_distributed.py, started by mpiexec.

    mpiexec -n 3 python tests/framework/distributed_job.py NET OUT [--epochs E]
        [--checkpoint PATH [--resume]] [--fail-at STEP [--die]] [--term-at STEP] [--slow]
        [--drift-on RANK]

Trains NET (two-layer, dropout, batchnorm, simple-conv) in float64 with the
Trainer on a fixed synthetic set and, on rank 0, writes the losses,
accuracies, parameters and layer state to OUT (an .npz). Run with plain
python it is the single-process reference. --fail-at raises on rank 1 at
that step (--die: kills it with SIGKILL instead); --term-at sends the last
rank a SIGTERM during that step (as a scheduler would), so the others learn of
it from the ranks' agreement; --slow trains long enough to be interrupted;
an interrupt prints the resume line on rank 0 and exits 130 (SIGINT) or 143
(SIGTERM).
"""

import argparse
import os
import signal
import sys
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402

from backends import get_array_module, to_numpy  # noqa: E402
from framework import distributed  # noqa: E402
from framework.layers import Affine, Relu, SoftmaxWithLoss  # noqa: E402
from framework.trainer import Trainer, TrainingInterrupted  # noqa: E402
from models import MultiLayerNetExtend, SimpleConvNet, TwoLayerNet  # noqa: E402

SMALL_CONV = {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1}
CALLS = []  # the batch sizes the network's own gradient was called on, in this process


class LoggingTwoLayerNet(TwoLayerNet):
    """A user's subclass overriding the book's ``gradient(self, x, t)`` (to log, count or
    clip): it must train data-parallel as it trains alone."""

    def gradient(self, x, t):
        CALLS.append(int(x.shape[0]))
        return super().gradient(x, t)


class BookTwoLayerNet:
    """The book's chapter-5 TwoLayerNet (ch05/two_layer_net.py), written out with
    framework.layers: a network of the user's own, not a models.base.Network."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.5):
        rng = np.random.default_rng(7)
        self.params = {"W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
                       "b1": np.zeros(hidden_size),
                       "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
                       "b2": np.zeros(output_size)}
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.lastLayer.forward(self.predict(x), t)

    def accuracy(self, x, t):
        xp = get_array_module(x)
        y = xp.argmax(self.predict(x), axis=1)
        return float(xp.sum(y == t)) / float(x.shape[0])

    def gradient(self, x, t):
        CALLS.append(int(x.shape[0]))
        self.loss(x, t)
        dout = self.lastLayer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {"W1": self.layers["Affine1"].dW, "b1": self.layers["Affine1"].db,
                "W2": self.layers["Affine2"].dW, "b2": self.layers["Affine2"].db}
class MyDropout:
    """A dropout of the user's own (not framework.layers.Dropout): under mpiexec each
    process would draw its own mask, another run than one process's."""

    def __init__(self, ratio=0.3):
        self.ratio, self.mask = ratio, None

    def forward(self, x):
        self.mask = np.random.default_rng().random(x.shape) > self.ratio
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


def book_with_own_dropout():
    net = BookTwoLayerNet(12, 7, 3)
    net.layers["Dropout1"] = MyDropout()
    net.layers.move_to_end("Affine2")
    return net


NETS = {
    "two-layer": (lambda: TwoLayerNet(12, 7, 3, dtype="float64", seed=1, weight_init_std=0.5),
                  (12,)),
    "dropout": (lambda: MultiLayerNetExtend(12, [8, 6], 3, use_dropout=True, dropout_ration=0.3,
                                            weight_decay_lambda=0.01, dtype="float64", seed=2),
                (12,)),
    "batchnorm": (lambda: MultiLayerNetExtend(12, [8, 6], 3, use_batchnorm=True,
                                              dtype="float64", seed=3), (12,)),
    "simple-conv": (lambda: SimpleConvNet((1, 6, 6), SMALL_CONV, hidden_size=5, output_size=3,
                                          dtype="float64", seed=4), (1, 6, 6)),
    "subclass": (lambda: LoggingTwoLayerNet(12, 7, 3, dtype="float64", seed=1,
                                            weight_init_std=0.5), (12,)),
    "book": (lambda: BookTwoLayerNet(12, 7, 3), (12,)),
    "book-own-dropout": (book_with_own_dropout, (12,)),
}


class BookMomentum:
    """Chapter 6's Momentum as a reader writes it: the Trainer adopts it."""

    def __init__(self, lr=0.05, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {k: get_array_module(p).zeros_like(p) for k, p in params.items()}
        for key in params.keys():
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


# Adam divides by the gradient's own scale, so on the Affine biases before a batch norm
# (whose exact gradient is zero) it turns rounding noise into steps: SGD there.
ADAM = {"optimizer": "Adam", "optimizer_param": {"lr": 0.01}}
OPTIMIZER = {"batchnorm": {"optimizer": "SGD", "optimizer_param": {"lr": 0.1}}}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("net", choices=NETS)
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--checkpoint")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fail-at", type=int)
    p.add_argument("--slow", action="store_true")
    p.add_argument("--die", action="store_true", help="with --fail-at: SIGKILL rank 1 instead")
    p.add_argument("--term-at", type=int)
    p.add_argument("--bad-lr-on", type=int, metavar="RANK",
                   help="that rank alone asks for a negative learning rate")
    p.add_argument("--lr-only", action="store_true",
                   help="with --bad-lr-on: a valid but different one (twice the others')")
    p.add_argument("--diverge", action="store_true",
                   help="every rank trains at a learning rate that makes the loss NaN")
    p.add_argument("--other-data-on", type=int, metavar="RANK",
                   help="that rank alone draws its training set from another seed")
    p.add_argument("--wider-on", type=int, metavar="RANK",
                   help="that rank alone builds a wider two-layer net")
    p.add_argument("--drift-on", type=int, metavar="RANK",
                   help="that rank alone nudges b1 after its third step, as a bug in a "
                        "data-parallel step would: check_replicas must name it")
    p.add_argument("--samples", type=int, default=50,
                   help="the training set's size (51: each epoch ends on a batch of one)")
    p.add_argument("--drop-last", action="store_true",
                   help="the Trainer's drop_last: each epoch's short last batch left out")
    p.add_argument("--own-optimizer", action="store_true",
                   help="train with BookMomentum, an optimizer of the reader's own")
    p.add_argument("--unseeded", action="store_true",
                   help="a network and a Trainer without seeds: each rank draws its own")
    args = p.parse_args()
    make, shape = NETS[args.net]
    rng = np.random.default_rng(0)
    n = 4000 if args.slow else args.samples
    x, t = rng.standard_normal((n,) + shape), rng.integers(0, 3, n)
    world = distributed.world()
    if args.other_data_on == world.rank:
        x = np.random.default_rng(1).standard_normal((n,) + shape)
    network = make()
    if args.wider_on == world.rank:
        network = TwoLayerNet(12, 9, 3, dtype="float64", seed=1)
    if args.unseeded:  # weights (and dropout's keys) from this process's own entropy
        network = type(network)(**network.config(), dtype="float64", seed=None)
    optimizer = OPTIMIZER.get(args.net, ADAM)
    if args.own_optimizer:
        optimizer = {"optimizer": BookMomentum()}
    if args.diverge:
        optimizer = {"optimizer": "SGD", "optimizer_param": {"lr": 1e30}}
    if args.bad_lr_on == world.rank:
        optimizer = {"optimizer": "SGD", "optimizer_param": {"lr": -1.0}}
        if args.lr_only:
            optimizer = {"optimizer": "Adam", "optimizer_param": {"lr": 0.02}}
    trainer = Trainer(network, x, t, x[:13], t[:13], epochs=200 if args.slow else args.epochs,
                      mini_batch_size=10, **optimizer,
                      verbose=False, seed=None if args.unseeded else 5,
                      checkpoint=args.checkpoint, resume=args.resume,
                      check_replicas=True, drop_last=args.drop_last,
                      graph=False)  # on a GPU the reference takes the eager step as the ranks do
    if args.fail_at:
        real, count = trainer.train_step, [0]

        def failing(xb, tb):
            count[0] += 1
            if count[0] == args.fail_at and world.rank == 1:
                if args.die:  # no Python error, no MPI_Abort: the process is simply gone
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError(f"a deliberate failure at step {count[0]}")
            return real(xb, tb)
        trainer.train_step = failing
    if args.term_at:
        real_step, steps_here = trainer.train_step, [0]

        def signalled(xb, tb):
            steps_here[0] += 1
            if steps_here[0] == args.term_at and world.rank == world.size - 1:
                os.kill(os.getpid(), signal.SIGTERM)  # noted; the step still runs
            return real_step(xb, tb)
        trainer.train_step = signalled
    if args.drift_on is not None:
        real_train, steps_done = trainer.train_step, [0]

        def drifting(xb, tb):
            loss = real_train(xb, tb)
            steps_done[0] += 1
            if steps_done[0] == 3 and world.rank == args.drift_on:
                network.params["b1"] += 1e-9  # in place: this rank's replica alone moves
            return loss
        trainer.train_step = drifting
    orders = []  # this rank's epoch orders, to compare with the other ranks'
    start_epoch = trainer.batches.start_epoch

    def recording_order():
        order = start_epoch()
        orders.append(to_numpy(order).tolist() if order is not None else None)
        return order
    trainer.batches.start_epoch = recording_order
    seen = CALLS  # the batch sizes this rank's gradient saw: its shards only
    if args.net not in ("subclass", "book"):  # those count their own calls
        gradient = trainer.network.gradient

        def recording(x, t):
            seen.append(int(x.shape[0]))
            return gradient(x, t)
        trainer.network.gradient = recording
    if world.is_root:
        print(f"world: {world.size} process(es); step: pending", flush=True)
    try:
        trainer.train()
    except TrainingInterrupted as stop:
        if world.is_root:
            print(f"{stop}. Resume with: --checkpoint {stop.checkpoint} --resume", flush=True)
        sys.exit(128 + stop.signum)
    with open(f"{args.out}.rank{world.rank}", "w") as f:
        f.write(" ".join(map(str, sorted(set(seen)))))
    with open(f"{args.out}.orders{world.rank}", "w") as f:
        f.write(repr(orders))
    state = getattr(trainer.network, "state", dict)()
    with open(f"{args.out}.keys{world.rank}", "w") as f:  # dropout's generators, as they end
        f.write(repr({k: to_numpy(v).tolist() for k, v in state.items() if k.endswith("/key")}))
    if world.is_root:
        print(f"step: {trainer.step_mode}", flush=True)
        np.savez(args.out, losses=np.asarray(trainer.train_loss_list),
                 train_acc=np.asarray(trainer.train_acc_list),
                 test_acc=np.asarray(trainer.test_acc_list),
                 final=np.asarray(trainer.final_test_acc),
                 **{f"param/{k}": to_numpy(v) for k, v in trainer.network.params.items()},
                 **{f"state/{k}": to_numpy(v)
                    for k, v in getattr(trainer.network, "state", dict)().items()})


if __name__ == "__main__":
    main()
