"""Minibatches from data that lives on the device.

:class:`DeviceBatches` sends a dataset to a backend once and yields
minibatches by indexing there, so a training step never copies a batch
from the host.
"""

import backends


class DeviceBatches:
    """Iterate over ``(x_batch, t_batch)`` minibatches of ``(x, t)`` on one backend.

    One ``for`` loop over the object is one epoch:

    * ``shuffle=True`` (default): a fresh permutation each epoch, so every
      sample appears exactly once; the last batch is smaller when ``N`` is
      not a multiple of ``batch_size``, unless ``drop_last``.
    * ``replacement=True``: the book's ``np.random.choice(N, batch_size)``
      sampling, ``ceil(N / batch_size)`` batches per epoch.
    * neither: the data in order.

    The indices of a whole epoch are drawn on the host from
    ``numpy.random.default_rng(seed)`` and sent in one copy (a 240 KB
    array for MNIST): the same seed then gives the same batches on every
    backend, which the CPU-GPU parity checks rely on. Batches are gathered
    on the device from that array; nothing is copied per batch.

    Integer labels are range-checked here, once, on the host, against
    ``num_classes`` when given: reading them on the GPU later would stall
    every step.
    """

    def __init__(self, x, t, batch_size, *, shuffle=True, replacement=False, seed=None,
                 backend=None, dtype=None, num_classes=None, drop_last=False):
        if x.shape[0] != t.shape[0]:
            raise ValueError(f"DeviceBatches: x has {x.shape[0]} samples but t has {t.shape[0]}")
        if batch_size < 1:
            raise ValueError(f"DeviceBatches: batch_size must be at least 1, got {batch_size}")
        if shuffle and replacement:
            raise ValueError("DeviceBatches: choose shuffle or replacement, not both")
        if num_classes is not None and t.ndim == 1 and not backends.is_device_array(t) \
                and t.size and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"DeviceBatches: labels must lie in 0..{num_classes - 1}, got "
                             f"{int(t.min())}..{int(t.max())}")
        self.backend = backend or backends.current()
        self.x = self.backend.asarray(x, dtype=dtype)
        self.t = self.backend.asarray(t)
        self.xp = self.backend.xp
        self.size = int(x.shape[0])
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.replacement = replacement
        self.drop_last = drop_last
        self.rng = backends.host_rng(seed)
        self.epoch = 0

    def __len__(self):
        """Batches per epoch."""
        if self.drop_last:
            return max(self.size // self.batch_size, 1)
        return -(-self.size // self.batch_size)

    def epoch_indices(self):
        """The next epoch's sample order, on the device (or None to take the data in order)."""
        if self.replacement:
            host = self.rng.integers(0, self.size, size=len(self) * self.batch_size)
        elif self.shuffle:
            host = self.rng.permutation(self.size)
        else:
            return None
        return self.backend.asarray(host.astype("int32" if self.size < 2**31 else "int64"))

    @property
    def full_batches(self):
        """How many of an epoch's batches hold ``batch_size`` samples (all but a short last one)."""
        if self.replacement or self.drop_last:
            return len(self)
        return self.size // self.batch_size

    def start_epoch(self):
        """Draw the next epoch's order (see :meth:`epoch_indices`) and count the epoch."""
        order = self.epoch_indices()
        self.epoch += 1
        return order

    def batch(self, order, i):
        """Batch ``i`` of the epoch whose order :meth:`start_epoch` returned."""
        start = i * self.batch_size
        if order is None:
            return self.x[start:start + self.batch_size], self.t[start:start + self.batch_size]
        idx = order[start:start + self.batch_size]
        # take() rather than x[idx]: a tenth faster per step in NumPy
        return self.xp.take(self.x, idx, axis=0), self.xp.take(self.t, idx, axis=0)

    def __iter__(self):
        order = self.start_epoch()
        for i in range(len(self)):
            yield self.batch(order, i)
