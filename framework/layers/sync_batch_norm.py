"""Batch Normalization over every process's batch: the data-parallel run's batch norm."""

from backends import get_array_module, on_device_of
from framework import sharding
from framework.layers.batch_norm import BatchNormalization


class SyncBatchNormalization(BatchNormalization):
    """:class:`BatchNormalization` whose batch statistics are the whole data-parallel batch's:
    each mean over the batch axis is each process's sum, all-reduced (added in rank order,
    the same bits on every process) through ``communicator`` and divided by every
    process's samples together. In training, forward all-reduces twice (the mean, the
    variance) and backward twice; inference uses the running averages, as the plain
    layer does. With a world of one it is the plain layer, bit for bit.

    As PyTorch's ``SyncBatchNorm`` and ChainerMN's ``MultiNodeBatchNormalization``, it is
    a layer of the network, given its communicator once: the Trainer makes a network's
    batch norms these where a data-parallel run asks it to (``sync_batchnorm=True``, the
    default; :func:`framework.data_parallel.synchronize_batch_norms`), and a model may
    build them itself. Without it each process normalises by its own shard's
    statistics: another network's result.
    """

    def __init__(self, gamma, beta, communicator, momentum=0.9, running_mean=None,
                 running_var=None, name="BatchNormalization"):
        super().__init__(gamma, beta, momentum, running_mean, running_var, name)
        self.communicator = communicator
        self.count = None  # every process's samples together, counted by the last forward

    @classmethod
    def of(cls, layer, communicator):
        """``layer`` (a :class:`BatchNormalization`) made synchronised: the same parameter and
        running-average arrays, so the network's ``params`` and state stay the ones in it."""
        synced = cls.__new__(cls)
        synced.__dict__.update(vars(layer))
        synced.communicator = communicator
        synced.count = None
        return synced

    def _batch_mean(self, sums, n, count=False):
        xp = get_array_module(sums)
        if count:  # the samples, counted with the first sum of each forward
            rows = xp.full((1,), n, dtype=sums.dtype, **on_device_of(xp, sums))
            total = self.communicator.all_reduce(xp.concat([sums, rows]))
            self.count = total[-1]
            return total[:-1] / self.count
        return self.communicator.all_reduce(sums) / self.count

    def _gradient_means(self, s, sxn, n):
        """Backward's means over the whole batch, in one all-reduce. In a data-parallel step
        (:mod:`framework.sharding`) each process's ``dout`` is its shard's mean loss's
        gradient, which the step weights by the shard's share of the batch only after
        backward: the sums are weighted here first (every process's on one scale, the
        whole batch's mean loss's), and the means come back on this process's scale."""
        xp = get_array_module(s)
        shard = sharding.current()
        share = 1.0 if shard is None else shard.share
        sums = xp.concat([s, sxn])
        if share != 1.0:
            sums *= share
        total = self.communicator.all_reduce(sums) / self.count
        if share != 1.0:
            total /= share
        d = s.shape[0]
        return total[:d], total[d:]
