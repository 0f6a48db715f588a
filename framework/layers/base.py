"""What every layer is by default: a name, no train flag, no buffers, a stacked forward.

A layer subclasses :class:`Layer` and writes ``forward`` and ``backward``; the
walk of :class:`models.base.Network` reads these attributes without probing:

``takes_train_flg``
    True where ``forward(x, train_flg)`` differs between training and
    inference (batch norm, dropout; convolution, which keeps its columns for
    ``backward`` in training only): the network passes the flag.
``buffers``
    names of the non-parameter arrays the layer keeps (batch norm's running
    averages, dropout's generator position): the network's state, saved in
    checkpoints and restored by :func:`framework.testing.check_backward`.
``forward_stack(x[, train_flg])``
    the forward pass for a stack ``(K, N, ...)`` of inputs, without side
    effects, for the vectorised numerical gradient. The default folds the
    stack into one batch of ``K * N`` and puts the layer's attributes back
    afterwards: right for any layer that treats samples independently.
``perturbed_outputs(x, param, index, delta[, train_flg])``
    the outputs of K copies of the layer, copy k with flat element
    ``index[k]`` of parameter ``param`` moved by ``delta``. The default moves
    one element at a time; layers with a cheaper form (Affine, Convolution,
    BatchNormalization) override it.
"""

from backends import copy, get_array_module, to_numpy


class Layer:
    """Base of the layers: the defaults above."""

    takes_train_flg = False
    buffers = ()

    def __init__(self, name=None):
        self.name = name or type(self).__name__

    def _forward(self, x, train_flg):
        if self.takes_train_flg:
            return self.forward(x, train_flg)
        return self.forward(x)

    def forward_stack(self, x, train_flg=True):
        xp = get_array_module(x)
        k, n = x.shape[:2]
        saved = dict(vars(self))
        try:
            out = self._forward(xp.reshape(x, (k * n,) + tuple(x.shape[2:])), train_flg)
        finally:
            vars(self).clear()
            vars(self).update(saved)
        return xp.reshape(out, (k, n) + tuple(out.shape[1:]))

    def perturbed_outputs(self, x, param, index, delta, train_flg=True):
        # One element at a time (reads the indices on the host: the numerical gradient
        # is a check, not a hot loop).
        xp = get_array_module(x)
        p = getattr(self, param)
        outs = []
        for i in to_numpy(index).tolist():
            at = tuple(int(j) for j in divmod_all(i, p.shape))
            orig = copy(p[at])
            p[at] = orig + delta  # in place: the layer's own array, no view needed
            outs.append(self.forward_stack(x[None, ...], train_flg)[0, ...])
            p[at] = orig
        return xp.stack(outs)


def divmod_all(i, shape):
    """The multi-index of flat (row-major) element ``i`` of an array of ``shape``."""
    index = []
    for n in reversed(tuple(shape)):
        i, r = divmod(i, n)
        index.append(r)
    return reversed(index)
