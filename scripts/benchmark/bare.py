"""The training steps hand-written in NumPy, no framework: what NumPy alone does (``numpy-bare``).

Each starts from xpnet's own initial parameters and takes the same batches
(a permutation per window), temporaries updated in place, losses kept: a
floor for the layers and the Trainer, measured beside them.
"""

import numpy as np

import backends
from scripts.benchmark.overhead import BareTwoLayer


def softmax_cross_entropy(s, t, rows):
    """The loss and its gradient, in place on the scores ``s``:
    ``(mean cross-entropy, (softmax(s) - onehot(t)) / N)``."""
    b = s.shape[0]
    s -= s.max(axis=1, keepdims=True)
    e = np.exp(s)
    z = e.sum(axis=1, keepdims=True)
    e /= z
    loss = (np.log(z)[:, 0] - s[rows, t]).sum() / b
    e[rows, t] -= 1
    e *= 1 / b
    return loss, e


class TwoLayerStep:
    """Affine - ReLU - Affine - softmax cross-entropy, SGD: overhead.py's hand-written step
    (the one the A/B across commits times too) on a permutation of the data a window."""

    def __init__(self, net, batch, data, steps):
        self.step = BareTwoLayer(net.xpnet().params, net.lr)  # xpnet's start
        self.batch, (self.x, self.t), self.steps = batch, data, steps
        self.rng = np.random.default_rng(0)
        self.losses = np.empty(steps, dtype=np.float32)

    def window(self):
        x_all, t_all, b = self.x, self.t, self.batch
        order = self.rng.permutation(x_all.shape[0]).astype(np.int32)
        for i in range(self.steps):
            idx = order[i * b:(i + 1) * b]
            self.losses[i] = self.step.step(np.take(x_all, idx, axis=0),
                                            np.take(t_all, idx, axis=0))


class DeepStep:
    """MultiLayerNet's step (with batch norm where the net has it): one loop down the
    layers and one back up."""

    def __init__(self, net, batch, data, steps):
        xp_net = net.xpnet()  # xpnet's start
        self.bn = getattr(xp_net, "use_batchnorm", False)
        hidden = xp_net.hidden_size_list
        n = len(hidden) + 1
        self.W = [backends.to_numpy(xp_net.params[f"W{i}"]).copy() for i in range(1, n + 1)]
        self.b = [backends.to_numpy(xp_net.params[f"b{i}"]).copy() for i in range(1, n + 1)]
        self.gamma = [np.ones(h, np.float32) for h in hidden]
        self.beta = [np.zeros(h, np.float32) for h in hidden]
        self.mean = [np.zeros(h, np.float32) for h in hidden]
        self.var = [np.ones(h, np.float32) for h in hidden]
        self.lr, self.batch, self.data, self.steps = net.lr, batch, data, steps
        self.rng = np.random.default_rng(0)
        self.rows = np.arange(batch)
        self.losses = np.empty(steps, dtype=np.float32)

    def window(self):
        x_all, t_all, b, rows, lr = *self.data, self.batch, self.rows, self.lr
        W, bias, gamma, beta = self.W, self.b, self.gamma, self.beta
        order = self.rng.permutation(x_all.shape[0]).astype(np.int32)
        hidden = len(W) - 1
        for i in range(self.steps):
            idx = order[i * b:(i + 1) * b]
            a, t = np.take(x_all, idx, axis=0), np.take(t_all, idx, axis=0)
            saved = []
            for l in range(hidden):
                z = a @ W[l]
                z += bias[l]
                norm = None
                if self.bn:
                    mu = z.mean(axis=0)
                    z -= mu
                    var = (z * z).mean(axis=0)
                    std = np.sqrt(var + 1e-6)
                    z /= std
                    norm = (z.copy(), std)
                    z *= gamma[l]
                    z += beta[l]
                    self.mean[l] *= 0.9
                    self.mean[l] += 0.1 * mu
                    self.var[l] *= 0.9
                    self.var[l] += 0.1 * var
                keep = z > 0
                z *= keep
                saved.append((a, keep, norm))
                a = z
            s = a @ W[hidden]
            s += bias[hidden]
            self.losses[i], d = softmax_cross_entropy(s, t, rows)
            grads = [(a.T @ d, d.sum(axis=0))]
            d = d @ W[hidden].T
            bn_grads = []
            for l in reversed(range(hidden)):
                a_in, keep, norm = saved[l]
                d *= keep
                if self.bn:
                    xn, std = norm
                    dgamma = (xn * d).sum(axis=0)
                    dbeta = d.sum(axis=0)
                    d *= gamma[l]  # dxn
                    # dx = (dxn - mean(dxn) - xn mean(dxn xn)) / std
                    d -= d.mean(axis=0) + xn * (d * xn).mean(axis=0)
                    d /= std
                    bn_grads.append((dgamma, dbeta))
                grads.append((a_in.T @ d, d.sum(axis=0)))
                if l:
                    d = d @ W[l].T
            for l, (dW, db) in zip(reversed(range(hidden + 1)), grads):
                W[l] -= lr * dW
                bias[l] -= lr * db
            for l, (dgamma, dbeta) in zip(reversed(range(hidden)), bn_grads):
                gamma[l] -= lr * dgamma
                beta[l] -= lr * dbeta
