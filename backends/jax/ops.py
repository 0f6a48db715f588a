"""The JAX wing: the standard's operations (:class:`StandardOps`), each compiled by XLA as
one computation; on a GPU or TPU the convolution on XLA's own
(``lax.conv_general_dilated``, which runs cuDNN's there), its gradients from JAX's
transpose rules.

**One computation per operation.** Outside a compiled step JAX runs each of its
functions as a small program of its own, compiled once for each shape and dtype it meets
(tens of milliseconds each on a CPU) and dispatched at every call; the standard's ReLU
is three of them, dropout's generator some 300. Here each operation of the contract is
``jax.jit`` of the standard's code: one compilation per operation and kind of input,
one dispatch per call. The arguments that pick the computation (a convolution's stride
and padding, ReLU's ``mask``, dropout's shape, Adam's betas where they are Python
numbers, and so the other optimizers' momentum and decay rate, batch norm's epsilon and
momentum, weight decay's lambda) are static; the arrays and the numbers that change from
step to step (every learning rate, the loss's scale) are traced. Inside the Trainer's
compiled step (:mod:`framework.jit_step`) the calls are traced into the step as before.
``tests/backends/test_ops.py`` compares every operation with the reference.

On this project's 2-core CPU the standard's im2col measured faster than XLA's CPU
convolution inside the compiled DeepConvNet step (docs/performance.md, "JAX"), so the
CPU keeps it; ``xla_conv`` says which runs. Where XLA's convolution runs, ``conv`` keeps
the input (not im2col's columns) for ``conv_grad``, and ``conv_grad`` takes ``dx`` and
``dW`` from ``jax.vjp`` of the convolution (inside the compiled step XLA drops the
forward pass it repeats).
"""

import functools
import inspect

import jax
from jax import lax

from backends.ops.reference import StandardOps

LAYOUT = ("NCHW", "OIHW", "NCHW")  # the book's layouts: images, filters, outputs


def _convolve(x, W, stride, pad):
    return lax.conv_general_dilated(x, W, (stride, stride), [(pad, pad), (pad, pad)],
                                   dimension_numbers=LAYOUT)


def _compiled(method, *static):
    """``method`` (an operation taking the ops object first) as ``jax.jit`` of it, the
    ops object and the arguments named in ``static`` static, passed by position or by
    name."""
    names = list(inspect.signature(method).parameters)
    jitted = jax.jit(method, static_argnames=static,
                     static_argnums=(0,) + tuple(names.index(name) for name in static))

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        return jitted(self, *args, **kwargs)
    return run


def _conv(ops, x, W, b, stride, pad, out_h, out_w, xla):
    if not xla:
        return StandardOps.conv(ops, x, W, b, stride, pad, out_h, out_w)
    return _convolve(x, W, stride, pad) + b[None, :, None, None], x


def _conv_grad(ops, dout, x, W, saved, stride, pad, input_grad, xla):
    if not xla:
        return StandardOps.conv_grad(ops, dout, x, W, saved, stride, pad, input_grad)
    _, pullback = jax.vjp(lambda x_, W_: _convolve(x_, W_, stride, pad), x, W)
    dx, dW = pullback(dout)
    db = ops.xp.sum(dout, axis=(0, 2, 3))
    return (dx if input_grad else None), dW, db


_conv = jax.jit(_conv, static_argnums=(0, 4, 5, 6, 7, 8))
_conv_grad = jax.jit(_conv_grad, static_argnums=(0, 5, 6, 7, 8))
_uniform = jax.jit(StandardOps.uniform, static_argnums=(0, 3, 4))
_keep = jax.jit(StandardOps.keep, static_argnums=(0, 3, 4, 5))
# a step a Python number takes (a static constant of the computation) or an array (traced)
_perturbed_by_number = jax.jit(StandardOps.perturbed_copies, static_argnums=(0, 3, 4))
_perturbed_by_array = jax.jit(StandardOps.perturbed_copies, static_argnums=(0, 4))


def _constants_where_numbers(method, *constants):
    """``method`` (an optimizer's step, taking the ops object first) as two ``jax.jit``
    computations: the arguments at the positions ``constants`` (the ops object's counted
    as 0) static where all are Python numbers (constants of the computation, as the eager
    code's were: an optimizer's momentum, decay rate or betas, which a run rarely
    changes), traced where they are not (the compiled step passes the optimizer's numbers
    as inputs). The learning rate is always traced: a schedule changes it without a
    compilation. Arguments by position or by name."""
    as_constants = jax.jit(method, static_argnums=(0,) + constants)
    traced = jax.jit(method, static_argnums=0)
    signature = inspect.signature(method)

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if kwargs:  # by name: as positions, which the computations' static ones are
            args = signature.bind(self, *args, **kwargs).args[1:]
        numbers = all(isinstance(args[i - 1], (int, float)) for i in constants)
        return (as_constants if numbers else traced)(self, *args)
    return run


_adam_step_size = jax.jit(StandardOps.adam_step_size, static_argnums=0)
_running = jax.jit(StandardOps.batch_norm_running, static_argnums=(0, 5))
_decay = jax.jit(StandardOps.weight_decay, static_argnums=(0, 2))
_decay_grads = jax.jit(StandardOps.weight_decay_grads, static_argnums=(0, 3))


def _take_batch(x, t, order, start, size):
    # start traced (one computation for every batch of a size), where slicing by a Python
    # int would make it a constant
    idx = lax.dynamic_slice_in_dim(order, start, size)
    return jax.numpy.take(x, idx, axis=0), jax.numpy.take(t, idx, axis=0)


_take_batch = jax.jit(_take_batch, static_argnums=4)
_set_at = jax.jit(lambda a, i, value: a.at[i].set(value))


def _sgd_all(ops, params, grads, lr):
    return {key: StandardOps.sgd_update(ops, p, grads[key], lr) for key, p in params.items()}


_sgd_all = jax.jit(_sgd_all, static_argnums=0)


def _placement(where, length, count):
    """``lax.pad``'s ``(low, high, interior)`` for one axis: ``count`` elements put at the
    positions of the slice ``where`` (a start, a step) in an axis of ``length``."""
    start, step = where.start or 0, where.step or 1
    return start, length - (start + (count - 1) * step + 1), step - 1


class JaxOps(StandardOps):
    """The standard's operations, each one computation (see the module); the convolution
    on XLA's where ``xla_conv``."""

    name = "jax"

    def __init__(self, xp, backend=None, xla_conv=None):
        super().__init__(xp, backend)
        self.xla_conv = jax.default_backend() != "cpu" if xla_conv is None else xla_conv

    matmul = _compiled(StandardOps.matmul)
    affine_grad = _compiled(StandardOps.affine_grad, "input_grad")
    relu = _compiled(StandardOps.relu, "mask")
    relu_backward = _compiled(StandardOps.relu_backward)
    sigmoid = _compiled(StandardOps.sigmoid)
    sigmoid_backward = _compiled(StandardOps.sigmoid_backward)
    _exp_parts = _compiled(StandardOps._exp_parts)
    softmax = _compiled(StandardOps.softmax)
    log_softmax = _compiled(StandardOps.log_softmax)
    im2col = _compiled(StandardOps.im2col, "fh", "fw", "stride", "pad", "out_h", "out_w")
    col2im = _compiled(StandardOps.col2im, "x_shape", "fh", "fw", "stride", "pad", "out_h",
                       "out_w")
    max_pool = _compiled(StandardOps.max_pool, "ph", "pw", "stride", "pad", "out_h", "out_w")
    max_pool_grad = _compiled(StandardOps.max_pool_grad, "ph", "pw", "stride", "pad")
    softmax_cross_entropy = _compiled(StandardOps.softmax_cross_entropy)
    softmax_cross_entropy_grad = _compiled(StandardOps.softmax_cross_entropy_grad)
    batch_norm_center = _compiled(StandardOps.batch_norm_center)
    batch_norm_normalize = _compiled(StandardOps.batch_norm_normalize, "eps")
    batch_norm_grad_sums = _compiled(StandardOps.batch_norm_grad_sums)
    batch_norm_grad = _compiled(StandardOps.batch_norm_grad)
    sgd_update = _compiled(StandardOps.sgd_update)
    momentum_update = _constants_where_numbers(StandardOps.momentum_update, 5)
    nesterov_update = _constants_where_numbers(StandardOps.nesterov_update, 5)
    adagrad_update = _compiled(StandardOps.adagrad_update)
    rmsprop_update = _constants_where_numbers(StandardOps.rmsprop_update, 5)
    adam_update = _constants_where_numbers(StandardOps.adam_update, 6, 7)
    increment = _compiled(StandardOps.increment)

    def conv(self, x, W, b, stride, pad, out_h, out_w):
        return _conv(self, x, W, b, stride, pad, out_h, out_w, bool(self.xla_conv))

    def conv_grad(self, dout, x, W, saved, stride, pad, input_grad=True):
        return _conv_grad(self, dout, x, W, saved, stride, pad, input_grad,
                          bool(self.xla_conv))

    def uniform(self, key, counter, shape, first=0):
        return _uniform(self, key, counter, tuple(int(n) for n in shape), int(first))

    def keep(self, key, counter, shape, ratio, first=0):
        return _keep(self, key, counter, tuple(int(n) for n in shape), float(ratio),
                     int(first))

    def adam_step_size(self, t, lr, beta1, beta2):
        # the numbers traced, Python's or the compiled step's alike (a learning-rate schedule
        # changes lr without compiling again)
        return _adam_step_size(self, t, lr, beta1, beta2)

    def take_batch(self, x, t, order, start, stop):
        return _take_batch(x, t, order, start, stop - start)

    def set_at(self, a, i, value):
        return _set_at(a, i, value)

    # Windows placed by padding, not written in. The reference's ``at(img)[..., rows,
    # cols].add(part)`` becomes, in XLA, an update of ``img`` per window, one after the
    # other (a dynamic-update-slice, or a scatter for a strided window such as pooling's,
    # which XLA's CPU code runs an element at a time); ``img + pad(part)`` for every
    # window fuses into one pass that writes ``img`` once. The values are the
    # reference's, element for element (docs/performance.md, "JAX", for the time).

    def _padded(self, x, pad, fill):
        if not pad:
            return x
        edges = [(0, 0, 0)] * (x.ndim - 2) + [(pad, pad, 0)] * 2
        return lax.pad(x, jax.numpy.asarray(fill, dtype=x.dtype), edges)

    def _into_window(self, img, rows, cols, part, add=True):
        edges = [(0, 0, 0)] * (img.ndim - 2) + [
            _placement(rows, img.shape[-2], part.shape[-2]),
            _placement(cols, img.shape[-1], part.shape[-1])]
        placed = lax.pad(part, jax.numpy.zeros((), dtype=part.dtype), edges)
        if add:
            return img + placed
        inside = lax.pad(jax.numpy.ones(part.shape, dtype=bool), False, edges)
        return jax.numpy.where(inside, placed, img)

    def sgd_update_all(self, params, grads, lr):
        # every parameter's update in one computation, each key rebound to its new array
        new = _sgd_all(self, dict(params), {key: grads[key] for key in params}, lr)
        for key, p in new.items():
            params[key] = p

    def weight_decay(self, weights, lam):
        return _decay(self, list(weights), float(lam))

    def weight_decay_grads(self, grads, weights, lam):
        return _decay_grads(self, list(grads), list(weights), float(lam))

    def batch_norm_running(self, running_mean, running_var, mu, var, momentum):
        # the momentum a constant of the computation, as a Python float (a 0-d array the
        # layer was given is not hashable)
        return _running(self, running_mean, running_var, mu, var, float(momentum))

    def perturbed_copies(self, base, index, moved, axis):
        if isinstance(moved, (int, float)):
            return _perturbed_by_number(self, base, index, moved, axis)
        return _perturbed_by_array(self, base, index, moved, axis)
