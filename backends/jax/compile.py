"""What the compiled step needs of JAX itself: ``jax.jit`` with donated buffers, and a
batch gathered at a step index that is traced, not baked in.

The step (:class:`framework.jit_step.JitStep`: what is threaded through the pure
function, and put back into the network and optimizer) is the framework's; this module
holds the two calls that only JAX has, as :mod:`backends.cuda.graph` holds CuPy's capture.
"""

import jax
import jax.numpy as jnp
from jax import lax


#: what JAX raises where a step cannot be traced: Python asking for a traced value
#: (``float(x)``, ``if x > 0``, ``numpy.asarray(x)``, in a layer of the user's own) or a
#: shape that depends on values (``x[x > 0]``); a step that can run eagerly
UNTRACEABLE = (jax.errors.JAXTypeError, jax.errors.JAXIndexError)


def jit(fn, donate):
    """``jax.jit(fn)`` with the positional arguments ``donate`` donated: XLA may write the
    step's results into their buffers, which the caller must not read again."""
    return jax.jit(fn, donate_argnums=tuple(donate))


def gather(x, t, order, i, batch):
    """Batch ``i`` (a traced integer) of an epoch: ``batch`` samples of ``x`` and ``t`` at
    ``order[i * batch:(i + 1) * batch]``, or in order where ``order`` is None."""
    if order is None:
        start = i * batch
        return (lax.dynamic_slice_in_dim(x, start, batch, axis=0),
                lax.dynamic_slice_in_dim(t, start, batch, axis=0))
    index = lax.dynamic_slice_in_dim(order, i * batch, batch)
    return jnp.take(x, index, axis=0), jnp.take(t, index, axis=0)


def put(losses, i, loss):
    """``losses`` with ``loss`` at ``i`` (a new array, inside the compiled step)."""
    return losses.at[i].set(loss.astype(losses.dtype))


def index(i):
    """A step index as the compiled step takes it: a Python int, which ``jax.jit`` traces as
    a (weakly typed) integer argument like any other, never a constant, so every step runs
    the one compiled function; made into no array of its own first (that would cost a
    dispatch a step)."""
    return int(i)
