"""framework/layers/sync_batch_norm.py: batch norm over every process's batch. Under mpiexec
it is tested by the data-parallel runs (tests/framework/test_data_parallel.py and
test_distributed.py); here, that a world of one is the plain layer bit for bit, and that
its backward puts the shards' sums on one scale."""

import numpy as np
import pytest

from framework import sharding
from framework.distributed import Communicator
from framework.layers import BatchNormalization, SyncBatchNormalization
from tests.conftest import to_host


def layers(backend, features=5):
    rng = np.random.default_rng(0)
    gamma = backend.asarray(rng.random(features) + 0.5, "float64")
    beta = backend.asarray(rng.random(features), "float64")
    plain = BatchNormalization(gamma, beta, momentum=0.8)
    return plain, SyncBatchNormalization.of(BatchNormalization(
        backend.asarray(to_host(gamma)), backend.asarray(to_host(beta)), momentum=0.8),
        Communicator())


def test_a_world_of_one_is_the_plain_layer_bit_for_bit(backend):
    plain, synced = layers(backend)
    rng = np.random.default_rng(1)
    x = backend.asarray(rng.standard_normal((7, 5)), "float64")
    dout = backend.asarray(rng.standard_normal((7, 5)), "float64")
    for train in (True, False):
        assert np.array_equal(to_host(plain.forward(x, train)), to_host(synced.forward(x, train)))
    plain.forward(x, True), synced.forward(x, True)
    assert np.array_equal(to_host(plain.backward(dout)), to_host(synced.backward(dout)))
    for name in ("dgamma", "dbeta", "running_mean", "running_var"):
        assert np.array_equal(to_host(getattr(plain, name)), to_host(getattr(synced, name)))


class Halves:
    """Two equal 'processes' in one: the all-reduce adds this rank's sums to the other's,
    which the test holds (the other half of the batch's), in rank order."""

    def __init__(self, other):
        self.other = other

    def all_reduce(self, flat):
        return flat + self.other.pop(0)


@pytest.mark.backends("numpy")  # the other shard's sums are made here, in NumPy
def test_unequal_shards_add_their_gradients_on_one_scale(backend):
    """A batch of 7 cut 3 + 4: each shard's backward, weighted by its share as the step
    weights it, adds up to the whole batch's (the shards' douts are each their own
    mean's gradient, 1/3 and 1/4 a row)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 5))
    y = rng.standard_normal((7, 5))  # the loss: mean over rows of sum(out * y)
    plain, _ = layers(backend)
    plain.forward(backend.asarray(x), True)
    want = to_host(plain.backward(backend.asarray(y / 7)))
    got = []
    for (lo, hi), (olo, ohi) in (((0, 3), (3, 7)), ((3, 7), (0, 3))):
        gamma = backend.asarray(to_host(plain.gamma))
        beta = backend.asarray(to_host(plain.beta))
        # the other shard's forward sums and its weighted backward sums, as the
        # all-reduce would bring them
        xs, os = x[olo:ohi], x[lo:hi]
        mu = (xs.sum(0) + os.sum(0)) / 7
        var = (((xs - mu) ** 2).sum(0) + ((os - mu) ** 2).sum(0)) / 7
        xn_other = (xs - mu) / np.sqrt(var + 1e-6)
        dxn_other = (y[olo:ohi] / (ohi - olo)) * to_host(gamma)
        share_other = (ohi - olo) / 7
        sent = [np.concatenate([xs.sum(0), [ohi - olo]]), ((xs - mu) ** 2).sum(0),
                share_other * np.concatenate([dxn_other.sum(0), (dxn_other * xn_other).sum(0)])]
        layer = SyncBatchNormalization(gamma, beta, Halves(sent))
        with sharding.sharded(sharding.Shard(lo, hi, 7)):
            layer.forward(backend.asarray(x[lo:hi]), True)
            dx = to_host(layer.backward(backend.asarray(y[lo:hi] / (hi - lo))))
        got.append((lo, dx * (hi - lo) / 7))  # the step's weighting
    got = np.concatenate([dx for _, dx in sorted(got, key=lambda p: p[0])])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.backends("numpy")  # the other shard's sums are made here, in NumPy
@pytest.mark.parametrize("mine", [1, 0])
def test_a_shard_of_one_sample_or_none_is_no_batch_of_one(backend, mine):
    """A short last batch of 3 over two processes gives one of them 1 sample; a batch of 1,
    none: the whole batch counts, so the shard's forward neither warns of a batch of one
    nor refuses an empty batch, and normalises its rows by the whole batch's statistics."""
    import warnings
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5))
    plain, _ = layers(backend)
    want = to_host(plain.forward(backend.asarray(x), True))[:mine]
    xs = x[mine:]  # the other process's rows
    mu = x.mean(0)
    sent = [np.concatenate([xs.sum(0), [len(xs)]]), ((xs - mu) ** 2).sum(0)]
    layer = SyncBatchNormalization(backend.asarray(to_host(plain.gamma)),
                                   backend.asarray(to_host(plain.beta)), Halves(sent))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with sharding.sharded(sharding.Shard(0, mine, 3)):
            out = to_host(layer.forward(backend.asarray(x[:mine]), True))
    assert out.shape == (mine, 5)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14)
