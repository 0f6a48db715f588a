"""Activation and loss functions of chapters 3-5, for NumPy and CuPy arrays alike."""

from backends import get_array_module


def sigmoid(x):
    """1 / (1 + exp(-x)), computed without overflow for any finite x.

    exp is only ever taken of -|x| <= 0, so it lies in (0, 1]; the two
    branches are the same function written for x >= 0 and x < 0.
    """
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def relu(x):
    """max(0, x), elementwise."""
    xp = get_array_module(x)
    return xp.maximum(x, 0)


def softmax(x):
    """exp(x) / sum(exp(x)) along the last axis (1-D or 2-D input).

    The row maximum is subtracted first, so exp never overflows.
    """
    xp = get_array_module(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    e /= e.sum(axis=-1, keepdims=True)
    return e


def log_softmax(x):
    """x - logsumexp(x) along the last axis, exact where log(softmax(x)) underflows."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy_error(y, t):
    """-sum(t * log(y + 1e-7)) / N, the book's mini-batch cross entropy.

    ``y`` holds probabilities, 1-D (one sample) or 2-D ``(N, C)``; ``t`` is
    one-hot (same size as ``y``) or integer class indices. The 1e-7 guards
    log(0), as in the book.
    """
    xp = get_array_module(y, t)
    if y.ndim == 1:
        y = y.reshape(1, -1)
        t = t.reshape(1, -1) if t.size == y.size else t.reshape(1)
    if t.size == y.size:
        t = t.argmax(axis=1)
    n = y.shape[0]
    return -xp.log(y[xp.arange(n), t] + 1e-7).sum() / n
