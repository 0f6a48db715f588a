"""The few array operations the layers route through a backend: one name, one kernel per backend.

A layer stays one code path: it asks :func:`ops_for` for the operations of
its input's backend and calls them by name. :class:`Ops` is the plain
array-module version (NumPy's, and the reference every other must match);
:mod:`backends.cuda_ops` gives CuPy fused kernels for the same names, so a
GPU step issues a third of the launches, and GEMM kernels of its own for
the CUDA-graph step (CuPy refuses cuBLAS while a stream is being
captured).

Each operation:

``matmul(a, b, bias=None)``
    ``a @ b (+ bias)`` for 2-D ``a``, ``b`` (any strides, e.g. ``x.T``).
``relu(x)``
    ``(x * (x > 0), x > 0)``: the output and the mask backward needs.
``relu_backward(dout, keep)``
    ``dout * keep``.
``softmax_cross_entropy(x, t, rows)``
    ``(loss, y)``: ``y = softmax(x)`` row-wise, ``loss = mean_n(log sum exp
    x_n - x_n[t_n])`` for integer labels ``t``; ``rows`` is ``arange(N)``.
``softmax_cross_entropy_grad(y, t, scale, rows)``
    ``(y - onehot(t)) * scale``.
``sgd_update(p, g, lr)``
    ``p -= lr * g`` in place.
``uniform(key, counter, shape)``
    float64 numbers in [0, 1), a pure function of the device arrays ``key``
    and ``counter`` (``(1,)`` uint64 each) and the element's index: the
    SplitMix64 sequence started at ``mix(key ^ mix(counter))``. Nothing is
    drawn on the host and no generator object is involved, so the same
    numbers come out on every backend, and a CUDA graph that advances
    ``counter`` on the device draws new ones at each replay (CuPy's own
    generator calls cuRAND's host API, which stream capture refuses).
"""

from backends import _is_cupy_array


class Ops:
    """Array-module versions of the routed operations; they work on any backend."""

    name = "generic"

    def __init__(self, xp):
        self.xp = xp

    def matmul(self, a, b, bias=None):
        out = a @ b
        if bias is not None:
            out += bias  # in place: one temporary fewer per step
        return out

    def relu(self, x):
        keep = x > 0  # multiplying by the mask is faster than where() in NumPy
        return x * keep, keep

    def relu_backward(self, dout, keep):
        return dout * keep

    def softmax_cross_entropy(self, x, t, rows):
        xp = self.xp
        n = x.shape[0]
        shifted = x - x.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        e /= s
        picked = shifted[rows, t]  # IndexError for a label past the last class (NumPy)
        loss = (xp.log(s)[:, 0] - picked).sum() / n  # sum/n: a third of mean()'s cost
        return loss, e

    def softmax_cross_entropy_grad(self, y, t, scale, rows):
        dx = y.copy()
        dx[rows, t] -= 1
        dx *= scale
        return dx

    def sgd_update(self, p, g, lr):
        p -= lr * g

    def uniform(self, key, counter, shape):
        xp = self.xp
        u64 = xp.uint64
        size = 1
        for n in shape:
            size *= int(n)
        start = _mix64(xp, key ^ _mix64(xp, counter))
        z = xp.arange(size, dtype=u64)
        z *= u64(_GOLDEN)
        z += start
        z = _mix64(xp, z)
        z >>= u64(11)  # the top 53 bits: every double in [0, 1) on a 2^-53 grid
        return (z.astype(xp.float64) * 2.0 ** -53).reshape(shape)

    def __repr__(self):
        return f"<{self.name} ops on {self.xp.__name__}>"


_GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment and finaliser (Steele et al., 2014)
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _mix64(xp, z):
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic, a new array)."""
    u64 = xp.uint64
    z = z ^ (z >> u64(30))
    z *= u64(_MIX1)
    z ^= z >> u64(27)
    z *= u64(_MIX2)
    z ^= z >> u64(31)
    return z


_numpy_ops = None
_cupy_ops = None


def ops_for(x):
    """The operations for the backend ``x`` lives on (CuPy's fused kernels for a CuPy array)."""
    global _numpy_ops, _cupy_ops
    if _numpy_ops is not None and type(x) is _numpy_ops.xp.ndarray:
        return _numpy_ops  # the hot path on the CPU: a dozen calls a step
    if _is_cupy_array(x):
        if _cupy_ops is None:
            from backends.cuda_ops import CupyOps
            _cupy_ops = CupyOps()
        return _cupy_ops
    if _numpy_ops is None:
        import numpy
        _numpy_ops = Ops(numpy)
    return _numpy_ops
