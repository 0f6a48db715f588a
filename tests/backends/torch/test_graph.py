"""backends/torch/graph.py: the PyTorch graph step's bookkeeping, on the CPU's tensors (the
capture itself needs CUDA: tests/framework/test_steps.py runs it where PyTorch sees one).

The Feed gathers, on the device and at a device counter, the very batches the eager step
takes from DeviceBatches, and records each loss at its step (GraphStep's own bookkeeping:
tests/framework/test_graph_bookkeeping.py)."""

import numpy as np
import pytest

import backends
from framework.data import DeviceBatches
from framework.testing.plugin import unusable
from tests.conftest import to_host


@pytest.fixture
def torch_cpu():
    if "torch" not in backends.available():
        pytest.skip(unusable("torch", backends.backend_class("torch").usable()[1]))
    with backends.using("torch", device="cpu") as chosen:
        yield chosen


@pytest.mark.parametrize("images, labels", [(False, "uint8"), (True, "int64")])
def test_the_feed_gathers_the_eager_batches_at_its_counter(torch_cpu, images, labels):
    import torch
    from backends.torch.graph import Feed
    rng = np.random.default_rng(0)
    shape = (250, 1, 4, 4) if images else (250, 7)
    x, t = rng.random(shape, dtype=np.float32), rng.integers(0, 10, 250).astype(labels)
    batches = DeviceBatches(x, t, 50, seed=3, backend=torch_cpu)
    feed = Feed(batches.x, batches.t, 50, len(batches), batches.size, torch.float32)
    for epoch in range(2):
        order = batches.start_epoch()
        first = 1 if epoch else 0  # a resumed epoch starts at its step
        feed.start_epoch(order, first)
        for i in range(first, len(batches)):
            feed.gather()
            xb, tb = batches.batch(order, i)
            np.testing.assert_array_equal(to_host(feed.x_batch), to_host(xb))
            np.testing.assert_array_equal(to_host(feed.t_batch), to_host(tb))
            feed.record(torch.tensor(float(i) + 0.5, dtype=torch.float32))
            assert int(feed.counter[0]) == i + 1
        np.testing.assert_array_equal(to_host(feed.losses)[first:],
                                      np.arange(first, len(batches)) + 0.5)


def test_the_feed_refuses_what_it_cannot_gather(torch_cpu):
    import torch
    from backends.torch.graph import Feed
    x = torch.zeros((10, 3))
    with pytest.raises(ValueError, match="integer labels"):
        Feed(x, torch.zeros(10), 5, 2, 10, torch.float32)
    feed = Feed(x, torch.zeros(10, dtype=torch.int64), 5, 2, 10, torch.float32)
    with pytest.raises(TypeError, match="expected a torch.float32 tensor"):
        feed.record(torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="12 indices for a buffer of 10"):
        feed.start_epoch(torch.arange(12))


def test_graphs_are_offered_on_cuda_devices_only(torch_cpu):
    assert torch_cpu.graph_runtime() is None
    with backends.using("numpy") as host:
        assert host.graph_runtime() is None
