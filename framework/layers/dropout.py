"""Dropout (6.4.3; Srivastava et al., 2014), with a generator that lives on the device."""

import math

import backends
from backends import (backend_of, check_same_backend, get_array_module, ops_for, splitmix,
                      to_numpy)
from framework import sharding
from framework.layers.base import Layer, training


class Dropout(Layer):
    """Drop each unit with probability ``dropout_ratio`` in training.

    Forward, in training: out = x * mask, mask_i = (u_i > ratio) for
    uniform u_i, so each unit is kept with probability 1 - ratio; in
    inference: out = x * (1 - ratio), the expected value. Backward:
    dx = dout * mask, the mask of the last forward.

    The book's semantics (not "inverted" dropout). Where we differ:

    * The mask is drawn on the input's backend by a counter-based generator
      (``backends.ops``' ``uniform``): a ``key`` fixed by ``seed`` and a
      ``counter`` advanced on the device after each draw. Nothing crosses to
      the host per step, a seed gives the same masks on NumPy and CuPy, and a
      CUDA graph that replays the step draws a new mask each time. ``key``
      and ``counter`` are the layer's ``buffers``: checkpoints save them, so
      a resumed run draws the masks the uninterrupted run would have. Each is a
      ``(1,)`` uint64 array, or where the device has no 64-bit integers (JAX
      without ``jax_enable_x64``) ``(2,)`` uint32 words, which draw the same
      masks; a checkpoint holds the uint64 form from either.
      They are made on the default backend; a layer given data of another
      backend or device (a book-style network of the user's own, its parameters
      NumPy's, under ``XPNET_BACKEND=torch``) moves them to the data's, at the
      same position: the generator has no home but its data's.
    * ``hold_mask = True`` keeps the current mask for the following training
      forwards (a network's element-by-element numerical gradient sets it,
      so every evaluation sees one mask).
    * In a data-parallel step (:mod:`framework.sharding`: rows ``lo:hi`` of a global
      batch) it draws those rows of the mask the whole batch would get, so the
      processes together draw the one-process mask.
    * A ratio outside [0, 1) raises ``ValueError``.
    """

    takes_train_flg = True
    buffers = ("key", "counter")
    saved = ("mask", "_kept")

    def __init__(self, dropout_ratio=0.5, *, seed=None, name="Dropout"):
        try:
            ratio = float(dropout_ratio)
        except (TypeError, ValueError):
            ratio = float("nan")
        if isinstance(dropout_ratio, (bool, str, bytes)) or not 0 <= ratio < 1:
            raise ValueError(f"{name}: dropout_ratio must lie in [0, 1), got {dropout_ratio!r}")
        backend = backends.current()
        key = int(backends.host_rng(seed).integers(0, 2**63))
        super().__init__(name)
        self.dropout_ratio = ratio
        self.key, self.counter = splitmix.state(backend, key), splitmix.state(backend, 0)
        self.mask = None
        self._kept = None  # (mask, dtype, the mask in that dtype)
        self.hold_mask = False

    def __getstate__(self):
        # the generator's key and position as int64 in a copy or a pickle, uint64 again
        # after it: PyTorch pickles a uint64 tensor it cannot unpickle ("'UntypedStorage'
        # has no attribute 'dtype'"). Both lie below 2**63: the cast keeps their bits
        # (32-bit words stay as they are)
        state = super().__getstate__()
        for name in ("key", "counter"):
            if not splitmix.in_words(state[name]):
                xp = get_array_module(state[name])
                state[name] = xp.astype(state[name], xp.int64)
        return state

    def __setstate__(self, state):
        for name in ("key", "counter"):
            if not splitmix.in_words(state[name]):
                xp = get_array_module(state[name])
                state[name] = xp.astype(state[name], xp.uint64)
        self.__dict__.update(state)

    def host_buffer(self, name):
        return splitmix.on_host(to_numpy(getattr(self, name)))  # uint64 from either form

    def load_buffer(self, name, value):
        buf = getattr(self, name)
        if splitmix.in_words(value) != splitmix.in_words(buf):  # the other form
            value = splitmix.state(backend_of(buf), splitmix.value_of(to_numpy(value)))
        super().load_buffer(name, value)

    def _draw(self, shape, advance=True):
        ops = ops_for(self.counter)
        shard = sharding.current()
        if shard is not None:  # a data-parallel process: its rows of the global batch's mask,
            # drawn alone from the index of its first number (the generator is counter-based)
            keep = ops.keep(self.key, self.counter, tuple(shape), self.dropout_ratio,
                            first=shard.lo * math.prod(shape[1:]))
        else:
            keep = ops.keep(self.key, self.counter, tuple(shape), self.dropout_ratio)
        if advance:
            # on the device: a recorded step advances it each replay (JAX: a new counter)
            self.counter = ops.increment(self.counter)
        return keep

    def _scale(self, like):
        """The mask in ``like``'s dtype (the standard multiplies no floats by booleans)."""
        if self._kept is None or self._kept[0] is not self.mask or self._kept[1] != like.dtype:
            xp = get_array_module(like)
            self._kept = (self.mask, like.dtype, xp.astype(self.mask, like.dtype))
        return self._kept[2]

    def _meet(self, x):
        """The generator on ``x``'s backend and device: moved there (without the old
        backend's mask) where it lives elsewhere."""
        try:
            check_same_backend(self.name, x=x, counter=self.counter)
        except TypeError:  # data from elsewhere: the layer's own generator goes with it
            self._follow(x)

    def _follow(self, x):
        backend = backend_of(x)
        # new arrays from the values, in the form the data's device holds (never a view of
        # the old ones: NumPy's counter advances in place)
        self.key, self.counter = (splitmix.state(backend, splitmix.value_of(to_numpy(a)))
                                  for a in (self.key, self.counter))
        self.mask = self._kept = None

    def forward(self, x, train_flg=True):
        self._meet(x)
        if train_flg is not True and train_flg is not False:  # no call, no text for a bool
            train_flg = training(f"{self.name}.forward", train_flg)
        try:
            if not train_flg:
                return x * (1.0 - self.dropout_ratio)
            if not (self.hold_mask and self.mask is not None and self.mask.shape == x.shape):
                self.mask = self._draw(x.shape)
            return x * self._scale(x)
        except (AttributeError, TypeError):
            self._check_arrays("forward", x=x)
            raise

    def backward(self, dout):
        try:
            return dout * self._scale(dout)
        except Exception:  # what kind the library raises for None
            self._check_kept(dout=dout)
            raise

    def current_mask(self, shape):
        """The last forward's mask; if there is none of ``shape``, the one the next training
        forward will draw (drawn now without advancing the generator)."""
        if self.mask is None or tuple(self.mask.shape) != tuple(shape):
            self.mask = self._draw(shape, advance=False)
        return self.mask

    def forward_stack(self, x, train_flg=True):
        """The forward pass for each of a stack ``(K, N, ...)``, all with the current mask."""
        if not train_flg:
            return x * (1.0 - self.dropout_ratio)
        self._meet(x)
        mask = self.current_mask(x.shape[1:])
        return x * get_array_module(x).astype(mask, x.dtype)
