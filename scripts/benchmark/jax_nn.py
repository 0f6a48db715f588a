"""The few ``torch.nn`` layers the benchmark's networks are built from, as pure JAX
functions: so that ``net.torch(jax_nn)`` builds the same network the PyTorch row times,
written as a JAX user writes one (parameters in a list, ``jax.grad`` for the backward,
``jax.jit`` around the whole step), for the "JAX's own" row of
:mod:`scripts.benchmark.jax_step`.

Each layer has ``init(rng)``, its parameters drawn from a NumPy generator (a list of
arrays, maybe empty), and ``apply(params, x, key)``, ``key`` the step's random key (used by
dropout only). Convolutions and pooling are XLA's own (``lax.conv_general_dilated``,
``lax.reduce_window``) in PyTorch's layouts (NCHW images, OIHW filters).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _uniform(rng, fan_in, shape):
    bound = 1 / np.sqrt(fan_in)
    return jnp.asarray(rng.uniform(-bound, bound, shape).astype(np.float32))


class Linear:
    def __init__(self, n_in, n_out):
        self.n_in, self.n_out = n_in, n_out

    def init(self, rng):
        return [_uniform(rng, self.n_in, (self.n_in, self.n_out)),
                _uniform(rng, self.n_in, (self.n_out,))]

    def apply(self, params, x, key):
        W, b = params
        return x @ W + b


class Conv2d:
    def __init__(self, c_in, c_out, size, padding=0):
        self.c_in, self.c_out, self.size, self.pad = c_in, c_out, size, padding

    def init(self, rng):
        fan_in = self.c_in * self.size * self.size
        return [_uniform(rng, fan_in, (self.c_out, self.c_in, self.size, self.size)),
                _uniform(rng, fan_in, (self.c_out,))]

    def apply(self, params, x, key):
        W, b = params
        y = lax.conv_general_dilated(x, W, (1, 1), [(self.pad, self.pad)] * 2,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]


class _Stateless:
    def init(self, rng):
        return []


class ReLU(_Stateless):
    def apply(self, params, x, key):
        return jax.nn.relu(x)


class MaxPool2d(_Stateless):
    def __init__(self, size):
        self.size = size

    def apply(self, params, x, key):
        window = (1, 1, self.size, self.size)
        return lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")


class Flatten(_Stateless):
    def apply(self, params, x, key):
        return jnp.reshape(x, (x.shape[0], -1))


class Dropout(_Stateless):
    def __init__(self, ratio):
        self.ratio = ratio

    def apply(self, params, x, key):
        keep = jax.random.bernoulli(key, 1 - self.ratio, x.shape)
        return jnp.where(keep, x / (1 - self.ratio), 0)


class BatchNorm1d:
    """Training mode only (what a step runs): the batch's mean and variance."""

    def __init__(self, n, eps=1e-5):
        self.n, self.eps = n, eps

    def init(self, rng):
        return [jnp.ones(self.n, jnp.float32), jnp.zeros(self.n, jnp.float32)]

    def apply(self, params, x, key):
        gamma, beta = params
        mean, var = jnp.mean(x, axis=0), jnp.var(x, axis=0)
        return gamma * (x - mean) / jnp.sqrt(var + self.eps) + beta


class Sequential:
    def __init__(self, *layers):
        self.layers = layers

    def init(self, rng):
        return [layer.init(rng) for layer in self.layers]

    def apply(self, params, x, key):
        for i, (layer, p) in enumerate(zip(self.layers, params)):
            x = layer.apply(p, x, jax.random.fold_in(key, i))
        return x


def sgd_step(model, lr):
    """``step(params, x, t, order, i, key) -> (params, loss)``: batch ``i`` of the epoch's
    ``order`` gathered inside, the softmax cross-entropy's gradient by ``jax.grad``, SGD;
    compiled by ``jax.jit`` with the parameters donated."""
    def loss_of(params, x, t, key):
        scores = model.apply(params, x, key)
        log_p = jax.nn.log_softmax(scores, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_p, t[:, None], axis=1))

    def step(params, x, t, order, i, key, batch):
        rows = lax.dynamic_slice_in_dim(order, i * batch, batch)
        loss, grads = jax.value_and_grad(loss_of)(params, x[rows], t[rows],
                                                  jax.random.fold_in(key, i))
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

    return jax.jit(step, donate_argnums=(0,), static_argnames=("batch",))
