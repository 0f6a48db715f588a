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
``saved``
    names of what ``forward`` keeps for ``backward`` (inputs, columns, masks) and
    of the gradients ``backward`` leaves: :meth:`Layer.free_saved` drops them
    where no backward follows (after an evaluation, say), so that the arrays
    can go.
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

A layer's checks of its input, and the operations it computes with (the backend's:
:func:`backends.ops_for`), depend only on the kind of input: its library, device,
dtype and the shape past the batch axis. :meth:`Layer._bind` does both for a new kind,
and ``forward`` calls it only when the kind differs from the last one's (a tuple
compared, not a function called), so a training step checks and dispatches nothing
again.
"""

import numbers

import array_api_extra as xpx

from backends import backend_of, copy, get_array_module, ops_for, to_numpy
from backends.arrays import check_arrays, check_flag, is_array, on_device_of
from backends.registry import REGISTRY


class Layer:
    """Base of the layers: the defaults above."""

    takes_train_flg = False
    buffers = ()
    saved = ()
    _kind = None  # the kind of input last bound (see the module)
    _ops = None  # the operations for it
    _xtype = None  # its array type

    def __init__(self, name=None):
        self.name = name or type(self).__name__

    def __getstate__(self):
        # a copy or a pickle leaves out what this process found for the last kind of input
        # (its operations hold the library's module): the copy binds again on first use
        state = dict(vars(self))
        for name in ("_ops", "_xtype", "_kind"):
            state.pop(name, None)
        return state

    @staticmethod
    def kind_of(x):
        """What the checks and the dispatch depend on: ``x``'s library (its type), shape
        past the batch axis, dtype and device (none for JAX's tracers, inside a compiled
        step), and the settings' generation."""
        return (type(x), x.shape[1:], x.dtype, getattr(x, "device", None), REGISTRY.generation)

    def _check_arrays(self, method, **arrays):
        """``TypeError`` naming the layer, ``method`` and the first of ``arrays`` that is not
        an array (a list, say); nothing where each is one. Called where a pass failed, or
        for a new kind of input: never on a step's way."""
        check_arrays(f"{self.name}.{method}", **arrays)

    def _dout_ops(self, dout):
        """The operations for a ``dout`` of another type than the forward pass's input (a
        backward called by hand): ``TypeError`` if it is not an array, where NumPy's
        operations would have taken a list and the other libraries' refused it."""
        self._check_arrays("backward", dout=dout)
        return ops_for(dout)

    def _check_kept(self, **arrays):
        """Called where ``backward`` failed: ``TypeError`` if one of ``arrays`` (its
        ``dout``) is not an array; ``ValueError`` if no forward pass kept what it
        reads (the first of :attr:`saved` is None: none ran, or an evaluation freed it),
        rather than Python's words about None. Nothing is looked at on the way there."""
        self._check_arrays("backward", **arrays)
        if self.saved and getattr(self, self.saved[0], None) is None:
            raise ValueError(f"{self.name}: backward needs a forward pass (in training mode) "
                             f"first: none has kept what backward reads ({self.saved[0]} is "
                             f"None)") from None

    def _check(self, x):
        """The checks of a new kind of input (nothing by default): ``ValueError`` naming
        the layer and what was wrong."""

    def _bind(self, x, kind):
        """For a new kind of input: check it, and keep the operations for it."""
        self._check_arrays("forward", x=x)
        self._check(x)
        self._ops, self._xtype, self._kind = ops_for(x), type(x), kind

    def host_buffer(self, name):
        """The buffer ``name`` as a checkpoint writes it: a host (NumPy) array, in a form
        every backend's layer reads back (:meth:`load_buffer`)."""
        return to_numpy(getattr(self, name))

    def load_buffer(self, name, value):
        """Copy ``value`` (a host or device array, as :meth:`host_buffer` or the network's
        ``state`` gave it) into the buffer ``name``: in place, or (JAX) a new array put in
        its place."""
        buf = getattr(self, name)
        new = xpx.at(buf)[...].set(backend_of(buf).asarray(value, dtype=buf.dtype))
        if new is not buf:
            setattr(self, name, new)

    def free_saved(self):
        """Drop what the last forward and backward kept (the names in ``saved``)."""
        for name in self.saved:
            setattr(self, name, None)

    def _forward(self, x, train_flg):
        if self.takes_train_flg:
            return self.forward(x, train_flg)
        return self.forward(x)

    def forward_stack(self, x, train_flg=True):
        xp = get_array_module(x)
        k, n = x.shape[:2]
        attributes = dict(vars(self))
        try:
            out = self._forward(xp.reshape(x, (k * n,) + tuple(x.shape[2:])), train_flg)
        finally:
            vars(self).clear()
            vars(self).update(attributes)
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
            # in place: the layer's own array, no view needed (JAX: a moved copy, for now)
            moved = xpx.at(p)[at].set(orig + delta)
            setattr(self, param, moved)
            try:
                outs.append(self.forward_stack(x[None, ...], train_flg)[0, ...])
            finally:
                if moved is p:
                    xpx.at(p)[at].set(orig)
                setattr(self, param, p)
        return xp.stack(outs)


def bias_of(W, b, size):
    """``b`` as the bias array: a number (the book's ``ch07/apply_filter.py`` builds
    ``Convolution(w, 0)``, which its NumPy broadcast) as ``size`` of it, in W's dtype on
    W's device; anything else as it is, for the layer's checks."""
    if isinstance(b, numbers.Real) and not isinstance(b, bool) and not hasattr(b, "shape") \
            and is_array(W):
        xp = get_array_module(W)
        return xp.full((size,), float(b), dtype=W.dtype, **on_device_of(xp, W))
    return b


def training(owner, train_flg):
    """``train_flg`` as a bool: ``True`` and ``False`` as they are, at the cost of two
    identity tests; NumPy's booleans, 0 and 1 converted; anything else a ``ValueError``
    naming ``owner``. A string such as ``"False"`` (out of a config file) was true: a
    prediction ran in training mode, dropping units and moving batch norm's averages."""
    if train_flg is True or train_flg is False:
        return train_flg
    return check_flag(owner, "train_flg", train_flg)


def divmod_all(i, shape):
    """The multi-index of flat (row-major) element ``i`` of an array of ``shape``."""
    index = []
    for n in reversed(tuple(shape)):
        i, r = divmod(i, n)
        index.append(r)
    return reversed(index)
