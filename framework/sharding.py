"""The one context a data-parallel step opens around a network's call: which rows of the
global batch this process holds.

A data-parallel step (:mod:`framework.data_parallel`) hands each process its shard,
rows ``lo:hi`` of a global batch of ``n``, and calls the network's own
``gradient(x, t)`` on it, inside ``with sharded(Shard(lo, hi, n)):``. Nothing is passed
through ``gradient`` and no layer is changed for it. The layers whose result depends on
where their rows sit in the global batch read :func:`current`:

* :class:`framework.layers.Dropout` draws its shard's rows of the global batch's mask
  (its generator is counter-based: row ``lo``'s numbers start at index ``lo * row``);
* :class:`framework.layers.SyncBatchNormalization` needs no shard: it sums its
  statistics over the processes itself, through the communicator it was given;
* :class:`framework.layers.SoftmaxWithLoss` takes an empty shard (a short last batch with
  fewer samples than processes) for a loss of 0 and no gradient, where a batch of no
  samples is otherwise an error.

Outside a data-parallel step :func:`current` is None and every layer computes on the
batch it is given, as in one process. The context is the calling thread's.
"""

import contextlib
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """Rows ``lo:hi`` of a global batch of ``n`` samples: this process's."""

    lo: int
    hi: int
    n: int

    @property
    def share(self):
        """The part of the global batch these rows are: ``(hi - lo) / n``."""
        return (self.hi - self.lo) / self.n


class _Current(threading.local):
    shard = None


_current = _Current()


def current():
    """The :class:`Shard` of the data-parallel call running on this thread, or None."""
    return _current.shard


@contextlib.contextmanager
def sharded(shard):
    """Within the block, :func:`current` is ``shard`` (the one before is given back)."""
    previous, _current.shard = _current.shard, shard
    try:
        yield shard
    finally:
        _current.shard = previous
