"""The networks the benchmark times, as data: each says how to build it for every variant.

A :class:`Net` names the network (its label in the tables), the table it
belongs to, its learning rate and data, and four builders: xpnet's network
(on the current backend), the book's code (:mod:`scripts.benchmark.book`),
the step hand-written in NumPy (:mod:`scripts.benchmark.bare`, where there is
one) and PyTorch's ``nn`` model. ``variants`` lists the rows timed for it
(:mod:`scripts.benchmark.variants` says what each is and where it runs).
"""

from dataclasses import dataclass
from typing import Callable, Optional

from models import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from scripts.benchmark import bare, book

SIZES = (784, 50, 10)  # the book's two-layer net; `hidden` varies
LR = 0.1
DEEP_HIDDEN = [100] * 5
DEEP_LR = 0.01


@dataclass(frozen=True)
class Net:
    name: str  # the label in the tables: "50", "5x100-bn", "simple"
    table: str  # "two-layer", "deep" or "conv"
    lr: float
    images: bool  # the data as (N, 1, 28, 28) images
    xpnet: Callable  # () -> an xpnet network on the current backend
    book: Callable  # () -> the book's network (scripts/benchmark/book.py)
    torch: Callable  # (torch.nn) -> the same network as a torch.nn.Module
    variants: tuple
    bare: Optional[type] = None  # the hand-written NumPy step, where there is one


def two_layer(hidden):
    """TwoLayerNet(784, hidden, 10): the book's net, and DeZero's 784-1000-10."""
    return Net(
        str(hidden), "two-layer", LR, False,
        xpnet=lambda: TwoLayerNet(SIZES[0], hidden, SIZES[2], seed=0),
        book=lambda: book.TwoLayerNet(SIZES[0], hidden, SIZES[2], seed=0),
        torch=lambda nn: nn.Sequential(nn.Linear(SIZES[0], hidden), nn.ReLU(),
                                       nn.Linear(hidden, SIZES[2])),
        variants=("xpnet-trainer", "xpnet-standard", "xpnet-eager", "xpnet-unfused",
                  "xpnet-loop", "numpy-bare", "book-loop", "torch-eager"),
        bare=bare.TwoLayerStep)


def _deep_torch(batchnorm):
    def build(nn):
        layers, size = [], SIZES[0]
        for h in DEEP_HIDDEN:
            layers.append(nn.Linear(size, h))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h, eps=1e-6))
            layers.append(nn.ReLU())
            size = h
        layers.append(nn.Linear(size, SIZES[2]))
        return nn.Sequential(*layers)
    return build


def deep(batchnorm):
    """Chapter 6's MultiLayerNet(784, [100] * 5, 10), ReLU, He init (with batch norm: Extend)."""
    def xpnet():
        if batchnorm:
            return MultiLayerNetExtend(SIZES[0], DEEP_HIDDEN, SIZES[2], use_batchnorm=True,
                                       seed=0)
        return MultiLayerNet(SIZES[0], DEEP_HIDDEN, SIZES[2], seed=0)
    return Net(
        "5x100-bn" if batchnorm else "5x100", "deep", DEEP_LR, False, xpnet=xpnet,
        book=lambda: book.MultiLayerNetExtend(SIZES[0], DEEP_HIDDEN, SIZES[2],
                                              use_batchnorm=batchnorm, seed=0),
        torch=_deep_torch(batchnorm),
        variants=("xpnet-trainer", "xpnet-eager", "numpy-bare", "book-loop", "torch-eager"),
        bare=bare.DeepStep)


def _simple_torch(nn):
    return nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10))


def _deep_conv_torch(nn):
    layers, c = [], 1
    for i, (fn, pad) in enumerate(((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))):
        layers += [nn.Conv2d(c, fn, 3, padding=pad), nn.ReLU()]
        if i % 2:
            layers.append(nn.MaxPool2d(2))
        c = fn
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(50, 10), nn.Dropout(0.5))


CONV_VARIANTS = ("xpnet-trainer", "xpnet-standard", "xpnet-im2col", "xpnet-eager",
                 "xpnet-unfused", "book-loop", "torch-eager")
SIMPLE = Net("simple", "conv", DEEP_LR, True, xpnet=lambda: SimpleConvNet(seed=0),
             book=book.SimpleConvNet, torch=_simple_torch, variants=CONV_VARIANTS)
DEEP_CONV = Net("deep", "conv", DEEP_LR, True, xpnet=lambda: DeepConvNet(seed=0),
                book=book.DeepConvNet, torch=_deep_conv_torch, variants=CONV_VARIANTS)
DEEP_NETS = (deep(False), deep(True))
CONV_NETS = (SIMPLE, DEEP_CONV)


def by_name(name):
    """The :class:`Net` labelled ``name`` (a hidden size for the two-layer net)."""
    if name.isdigit():
        return two_layer(int(name))
    for net in DEEP_NETS + CONV_NETS:
        if net.name == name:
            return net
    raise ValueError(f"no benchmark net named {name!r}")
