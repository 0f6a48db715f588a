"""framework/sharding.py: the one context a data-parallel step opens, and dropout reading it."""

import numpy as np

import backends
from framework import sharding
from framework.layers import Dropout


def test_the_shard_is_the_calls_and_given_back():
    assert sharding.current() is None
    outer, inner = sharding.Shard(0, 5, 10), sharding.Shard(3, 7, 10)
    with sharding.sharded(outer):
        with sharding.sharded(inner):
            assert sharding.current() is inner and inner.share == 0.4
        assert sharding.current() is outer
    assert sharding.current() is None


def test_the_shard_is_the_calling_threads_alone():
    """Another thread (a host pool's part, a user's own) computes on the batch it is given."""
    import threading
    seen = []
    with sharding.sharded(sharding.Shard(0, 5, 10)):
        other = threading.Thread(target=lambda: seen.append(sharding.current()))
        other.start()
        other.join()
    assert seen == [None]


def test_dropout_draws_its_rows_of_the_whole_batchs_mask(backend):
    """Inside a shard, a dropout draws the rows of the mask the whole batch gets: the
    shards' masks, stacked, are the one-process mask."""
    whole = Dropout(0.4, seed=3)
    x = backend.asarray(np.ones((7, 5)))
    want = backends.to_numpy(whole.forward(x) != 0)
    parts = []
    for lo, hi in ((0, 3), (3, 7)):
        part = Dropout(0.4, seed=3)
        with sharding.sharded(sharding.Shard(lo, hi, 7)):
            parts.append(backends.to_numpy(part.forward(x[lo:hi, ...]) != 0))
    np.testing.assert_array_equal(np.concatenate(parts), want)
