"""Minibatches from data that lives on the device.

:class:`DeviceBatches` sends a dataset to a backend once and yields
minibatches by indexing there, so a training step never copies a batch
from the host.
"""

import contextlib
import numbers

import backends
from backends import dtype_kind, ops_for, size
from backends.arrays import NARROW_FLOATS, check_flag, float_dtype


def _self_dot(xp, flat):
    """``flat . flat``, split across the CPU's cores on the host (``ops.each_part``): one
    core reads memory at about half the speed two do, and the check must stay a small
    part of an epoch (docs/performance.md, "The data check at the door"). The parts are
    added in order, so the result does not depend on timing."""
    sums = {}
    dot = getattr(xp, "dot", None) or xp.vecdot  # NumPy's and CuPy's BLAS dot; the standard's

    def work(lo, hi):
        sums[lo] = dot(flat[lo:hi], flat[lo:hi])

    ops_for(flat).each_part(work, size(flat), nbytes=getattr(flat, "nbytes", 0))
    return sum(sums[lo] for lo in sorted(sums))


def _first_bad_row(xp, a):
    """The first row of ``a`` holding NaN or an infinity, or None if every row is finite.

    One dot product of the data with itself first: NaN and infinities carry
    through it, and it is a single vectorised pass over memory, where an
    element-wise test is several. Only if it is not finite (a bad value, or
    squares that overflowed) are the rows looked at one by one.
    """
    if backends.dtype_name(a.dtype).startswith(NARROW_FLOATS):
        # bfloat16, float8: PyTorch has neither a dot nor isfinite for float8, and its
        # squares overflow (float8_e4m3fn's largest is 448): checked as the float32 they
        # will be sent as, which takes no more memory than sending them does
        a = xp.astype(a, xp.float32)
    flat = xp.reshape(a, (-1,))
    quiet = xp.errstate(all="ignore") if hasattr(xp, "errstate") else contextlib.nullcontext()
    with quiet:  # inf * inf is the point here, not a warning
        if bool(xp.isfinite(_self_dot(xp, flat))):
            return None
    rows = ~xp.all(xp.isfinite(xp.reshape(a, (a.shape[0], -1))), axis=1)
    return int(xp.argmax(xp.astype(rows, xp.int8))) if bool(xp.any(rows)) else None


#: unsigned label types PyTorch neither gathers nor takes the min or max of
WIDE_UNSIGNED = ("uint16", "uint32", "uint64")


def _label_range(t):
    """The smallest and the largest of the labels ``t``, as Python ints: on their device,
    or on the host for PyTorch's uint16, uint32 and uint64 tensors, which it has no min of
    ("min_all" not implemented for 'UInt16'): they go through the host as they are sent
    (:func:`_gatherable`)."""
    if backends.dtype_name(t.dtype) in WIDE_UNSIGNED:
        t = backends.to_numpy(t)
    xp = backends.get_array_module(t)
    return int(xp.min(t)), int(xp.max(t))


def _gatherable(t):
    """Labels of an unsigned type wider than a byte (uint16 to uint64, as some files
    store them) as int32, the same numbers: PyTorch gathers none of those types ("index_select
    not implemented for 'UInt16'"), and int32 every library takes (JAX without 64-bit
    types included). Any other labels as they are; checked before (check_data)."""
    if backends.dtype_name(t.dtype) in WIDE_UNSIGNED:
        host = backends.to_numpy(t)  # (once, as the data is sent)
        if host.size == 0 or int(host.max()) < 2**31:
            return host.astype("int32")
    return t


def label_column(t, classes=None):
    """Whether ``t`` is a column of integer labels ``(N, 1)`` (a table's label column, as
    pandas and scikit-learn give one; the book's ``ch07/gradient_check.py``'s
    ``T = np.array([1]).reshape((1,1))``) for more than one class: the labels ``(N,)``, as
    the book's loss takes it. (Its accuracy took the column's argmax: 0 for every sample.)"""
    return getattr(t, "ndim", 0) == 2 and t.shape[1] == 1 and classes != 1 and \
        dtype_kind(t.dtype) in "iu"


def as_labels(t, classes=None):
    """``t`` as labels ``(N,)`` where it is a :func:`label_column`, else as it is."""
    if label_column(t, classes):
        return backends.get_array_module(t).reshape(t, (-1,))
    return t


def check_data(where, x, t, num_classes=None, names=("x", "t")):
    """Check a dataset once, where it enters: ``ValueError`` naming the array and the problem.

    Refuses an empty set, ``x`` and ``t`` of different lengths, labels that
    are neither integer class indices ``(N,)`` nor one-hot rows ``(N, C)``,
    labels outside ``0..num_classes - 1``, and NaN or infinite values in
    ``x`` or one-hot ``t`` (naming the first bad row). The finiteness test
    is one pass over the data (:func:`_first_bad_row`); the row is only
    looked for when there is one. Device arrays are checked on the device,
    with one read.
    """
    xn, tn = names
    t = as_labels(t, num_classes)  # (a column of them: what the caller sends, too)
    for name, a in ((xn, x), (tn, t)):
        if getattr(a, "ndim", 0) < 1:
            got = f"a {type(a).__name__}" if not hasattr(a, "ndim") else \
                f"an array of shape {tuple(a.shape)}"
            raise ValueError(f"{where}: {name} must be an array with a sample axis (a NumPy "
                             f"array or one of the backend's), got {got}")
    n = x.shape[0]
    if n == 0:
        raise ValueError(f"{where}: {xn} is empty (0 samples); expected at least one sample")
    if t.shape[0] != n:
        raise ValueError(f"{where}: {xn} has {n} samples but {tn} has {t.shape[0]}")
    if dtype_kind(x.dtype) not in "iufb":  # (bools: binarised images, 0 and 1)
        raise ValueError(f"{where}: {xn} has dtype {x.dtype}; expected numbers (float, "
                         f"integer or bool)")
    if x.ndim == 1:  # else found at the first step, as "use x[None] for a single sample"
        raise ValueError(f"{where}: {xn} has shape {tuple(x.shape)}: one number a sample; "
                         f"expected the samples along the first axis with their features "
                         f"after it, (N, features) or (N, C, H, W) ({xn}[:, None] makes a "
                         f"column of one feature)")
    if t.ndim == 1 and dtype_kind(t.dtype) not in "iu":
        raise ValueError(f"{where}: {tn} holds {t.dtype} values; 1-D labels must be integer "
                         f"class indices (or give one-hot rows of shape (N, classes))")
    if t.ndim == 2 and (dtype_kind(t.dtype) not in "iufb" or
                        (num_classes is not None and t.shape[1] != num_classes)):
        raise ValueError(f"{where}: {tn} has shape {tuple(t.shape)} and dtype {t.dtype}; expected "
                         f"one-hot rows of {num_classes or 'C'} numbers, or integer labels (N,)")
    if t.ndim > 2:
        raise ValueError(f"{where}: {tn} has shape {tuple(t.shape)}; expected labels (N,) or "
                         f"one-hot rows (N, classes)")
    for name, a in ((xn, x), (tn, t)):  # each in its own library's namespace: the data and
        try:  # the labels may come from two (sent apart)
            xp = backends.get_array_module(a)
        except TypeError as e:  # a refused library's, or NumPy's masked arrays
            raise TypeError(f"{where}: {name}: {e}") from None
        row = _first_bad_row(xp, a) if dtype_kind(a.dtype) == "f" and size(a) else None
        if row is not None:
            raise ValueError(f"{where}: {name} holds NaN or infinite values, first in row "
                             f"{row} of {n}; clean or drop those samples")
    if num_classes is not None and t.ndim == 1 and size(t):
        low, high = _label_range(t)
        if low < 0 or high >= num_classes:
            raise ValueError(f"{where}: labels must lie in 0..{num_classes - 1}, got "
                             f"{low}..{high} (in {tn})")


class DeviceBatches:
    """Iterate over ``(x_batch, t_batch)`` minibatches of ``(x, t)`` on one backend.

    One ``for`` loop over the object is one epoch:

    * ``shuffle=True`` (default): a fresh permutation each epoch, so every
      sample appears exactly once; the last batch is smaller when ``N`` is
      not a multiple of ``batch_size``, unless ``drop_last`` (a set smaller than one
      batch still gives one batch of all its samples: an epoch is never empty).
    * ``replacement=True``: the book's ``np.random.choice(N, batch_size)``
      sampling, ``ceil(N / batch_size)`` batches per epoch.
    * neither: the data in order.

    The indices of a whole epoch are drawn on the host from
    ``numpy.random.default_rng(seed)`` and sent in one copy (a 240 KB
    array for MNIST): the same seed then gives the same batches on every
    backend, which the CPU-GPU parity checks rely on. Batches are gathered
    on the device from that array; nothing is copied per batch.

    The data is checked here, once, before it is sent (:func:`check_data`:
    empty sets, lengths, label types and range against ``num_classes``,
    NaN and infinity): reading it on the GPU later would stall every step. Its errors
    name ``where`` and the arrays by ``names`` (the Trainer's: ``Trainer``, ``x_train``
    and ``t_train``, the arguments its user gave).
    """

    def __init__(self, x, t, batch_size, *, shuffle=True, replacement=False, seed=None,
                 backend=None, dtype=None, num_classes=None, drop_last=False,
                 where="DeviceBatches", names=("x", "t")):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise ValueError(f"DeviceBatches: batch_size must be at least 1 (an integer), got "
                             f"{batch_size!r}")
        # a string such as "no" would be true: shuffled where the data was meant in order
        shuffle, replacement, drop_last = (check_flag("DeviceBatches", name, value) for name, value
                                           in (("shuffle", shuffle), ("replacement", replacement),
                                               ("drop_last", drop_last)))
        if shuffle and replacement:
            raise ValueError("DeviceBatches: choose shuffle or replacement, not both")
        t = as_labels(t, num_classes)  # a column of labels, as labels
        check_data(where, x, t, num_classes, names)  # once, before it goes to the device
        self.backend = backend or backends.current()
        if dtype is not None:
            dtype = float_dtype("DeviceBatches", self.backend, dtype)
        self.x = self.backend.asarray(x, dtype=dtype)
        # one-hot rows in the data's dtype (np.eye(10)[t] is float64): cast once, here
        self.t = self.backend.asarray(_gatherable(t) if t.ndim == 1 else t,
                                      dtype=dtype if dtype is not None and t.ndim == 2
                                      else None)
        self.xp = backends.array_namespace(self.x)  # the namespace the arrays name
        self.size = int(x.shape[0])
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.replacement = replacement
        self.drop_last = drop_last
        self.rng = backends.host_rng(seed, where)
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
        if self.replacement:
            return len(self)
        return self.size // self.batch_size  # drop_last's one short batch of a small set: 0

    @property
    def short_batch(self):
        """The samples of an epoch's short last batch, 0 where every batch is whole (a
        multiple of the batch size, sampling with replacement, or ``drop_last`` leaving it
        out); a set smaller than one batch is one short batch of all of it."""
        short = self.size % self.batch_size
        if self.replacement or (self.drop_last and self.size > self.batch_size):
            return 0
        return short

    def start_epoch(self):
        """Draw the next epoch's order (see :meth:`epoch_indices`) and count the epoch.

        The generator's state before the draw is kept as ``epoch_start_state``:
        a checkpoint written mid-epoch stores it, and a resume draws the same order.
        """
        self.epoch_start_state = self.rng.bit_generator.state
        order = self.epoch_indices()
        self.epoch += 1
        return order

    def describe(self):
        """How the batches are drawn: the training set's size, the batch size, the sampling
        and whether a short last batch is left out (where there is one to leave out): a
        resume that drew them otherwise would not continue the run."""
        sampling = "choice" if self.replacement else "epoch" if self.shuffle else "in order"
        dropped = self.drop_last and not self.replacement and \
            self.size > self.batch_size and self.size % self.batch_size != 0
        return {"train_size": self.size, "mini_batch_size": self.batch_size,
                "sampling": sampling, "drop_last": dropped}

    def state(self, mid_epoch=False):
        """Where the draws stand, for a checkpoint: the generator's state and the epochs
        drawn, at an epoch's end; ``mid_epoch``: as they were before this epoch's order was
        drawn, so that a resume draws the same order again. With :meth:`describe`'s."""
        return {"batch_rng": self.epoch_start_state if mid_epoch else self.rng.bit_generator.state,
                "batch_epoch": self.epoch - 1 if mid_epoch else self.epoch,
                "batches": self.describe()}

    def load_state(self, state):
        """Continue from :meth:`state`'s (the description is the caller's to compare)."""
        self.rng.bit_generator.state = state["batch_rng"]
        self.epoch = state["batch_epoch"]

    def batch(self, order, i):
        """Batch ``i`` of the epoch whose order :meth:`start_epoch` returned."""
        start = i * self.batch_size
        stop = min(start + self.batch_size, self.size if order is None else order.shape[0])
        if order is None:
            return self.x[start:stop, ...], self.t[start:stop, ...]
        # take() rather than x[idx]: a tenth faster per step in NumPy; one computation on JAX
        return backends.ops_for(self.x).take_batch(self.x, self.t, order, start, stop)

    def __iter__(self):
        order = self.start_epoch()
        for i in range(len(self)):
            yield self.batch(order, i)
