"""backends/torch/ops.py's loss on a GPU, where a label past its row would be a device-side
assert that ends the process's use of the GPU: such a sample reads column 0 and its loss
is NaN. The CPU's tensors stand in for the device here (the branch is chosen by
``_on_device``); the GPU runs the same code."""

import numpy as np
import pytest

import backends
from framework.testing.plugin import unusable


@pytest.fixture
def device_ops():
    if "torch" not in backends.available():
        pytest.skip(unusable("torch", backends.backend_class("torch").usable()[1]))
    import torch
    from backends.torch.ops import TorchOps

    class OnADevice(TorchOps):
        @staticmethod
        def _on_device(t):
            return True
    return torch, OnADevice(torch), TorchOps(torch)


@pytest.mark.parametrize("bad", [3, -1, -3])
def test_a_label_outside_its_row_gives_a_nan_loss_on_a_device(device_ops, bad):
    torch, ops, _ = device_ops
    x = torch.tensor(np.random.default_rng(0).standard_normal((2, 3)))
    loss, y, _ = ops.softmax_cross_entropy(x, torch.tensor([0, bad]), None)
    assert torch.isnan(loss) and tuple(y.shape) == (2, 3)


@pytest.mark.parametrize("dtype", ["int64", "uint8"])
def test_labels_inside_their_rows_give_the_hosts_loss_and_gradient_on_a_device(device_ops,
                                                                                 dtype):
    torch, ops, host = device_ops
    x = torch.tensor(np.random.default_rng(1).standard_normal((4, 5)))
    t = torch.tensor(np.array([4, 0, 2, 2], dtype=dtype))
    loss, y, labels = ops.softmax_cross_entropy(x, t, None)
    want, y_host, labels_host = host.softmax_cross_entropy(x, t, None)
    assert float(loss) == pytest.approx(float(want), rel=1e-14)
    np.testing.assert_allclose(ops.softmax_cross_entropy_grad(y, labels, 0.25, None).numpy(),
                               host.softmax_cross_entropy_grad(y_host, labels_host, 0.25,
                                                               None).numpy(), rtol=1e-14)
    np.testing.assert_allclose(
        ops.softmax_cross_entropy_grad(y, labels, 0.25, None).numpy(),
        (torch.softmax(x, 1).numpy() - np.eye(5)[t.numpy()]) * 0.25, rtol=1e-12)
