"""backends/torch: xpnet computes its own gradients, so PyTorch's autograd never records a
graph, whatever the tensors the user hands in (data out of a model of their own that
requires gradients)."""

import threading

import numpy as np
import pytest

import backends
from framework.testing.plugin import unusable


@pytest.fixture
def torch():
    if "torch" not in backends.available():
        pytest.skip(unusable("torch", backends.backend_class("torch").usable()[1]))
    import torch
    with backends.using("torch", device="cpu"):
        yield torch


def test_inputs_that_require_gradients_record_no_graph(torch):
    """A network's gradient of such an input required gradients itself, and each update
    in place chained the parameters' history: after three steps W1 had a graph 36 nodes
    deep that grew with every step (and PyTorch warned of asarray's requires_grad at
    each batch the Trainer sent)."""
    from framework.optimizers import SGD
    from framework.trainer import Trainer
    from models import MultiLayerNetExtend
    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.random((12, 4)).astype(np.float32)).requires_grad_()
    t = torch.from_numpy(rng.integers(0, 3, 12))
    net = MultiLayerNetExtend(4, [5], 3, use_batchnorm=True, use_dropout=True, seed=0)
    optimizer = SGD(0.1)
    for _ in range(3):
        grads = net.gradient(x, t)
        optimizer.update(net.params, grads)
    assert not any(g.requires_grad for g in grads.values())
    assert all(p.is_leaf and not p.requires_grad for p in net.params.values())
    assert not net.predict(x).requires_grad and torch.is_grad_enabled()  # given back
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.asarray's "unspecified requires_grad"
        trainer = Trainer(MultiLayerNetExtend(4, [5], 3, seed=0), x, t, x, t, epochs=1,
                          mini_batch_size=4, verbose=False)
        trainer.train()
    assert not any(p.requires_grad for p in trainer.network.params.values())


def test_autograd_is_given_back_as_it_was_in_each_thread(torch):
    """Off inside a network call, whatever calls nest inside it (another network's, on the
    same operations), and back to what it was after: on in one thread, off in another
    that had turned it off, each as PyTorch's own per-thread switch."""
    scope = backends.ops_for(torch.ones(1)).scope()
    with scope:
        with scope:  # a call inside a call
            assert not torch.is_grad_enabled()
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    seen = {}

    def off_in_this_thread():
        torch.set_grad_enabled(False)
        with scope:
            seen["inside"] = torch.is_grad_enabled()
        seen["after"] = torch.is_grad_enabled()
    with scope:  # this thread inside a call meanwhile
        worker = threading.Thread(target=off_in_this_thread)
        worker.start()
        worker.join()
    assert seen == {"inside": False, "after": False} and torch.is_grad_enabled()


def test_a_parameter_bound_that_requires_gradients_is_refused_where_it_is_bound(torch):
    """A weight out of the user's own PyTorch model bound into a network's params: a leaf
    failed at the optimizer's first update in PyTorch's words ("a leaf Variable that
    requires grad is being used in an in-place operation"), far from the binding; one
    computed from it (``weight.T``) grew its autograd history with every update."""
    from framework.optimizers import SGD
    from models import TwoLayerNet
    net = TwoLayerNet(4, 5, 3, seed=0)
    mine = torch.nn.Linear(4, 5).weight
    for value in (mine.T.contiguous(), torch.zeros(4, 5, requires_grad=True)):
        with pytest.raises(ValueError, match=r"params\['W1'\]: a tensor that requires "
                                             r"gradients .* bind tensor.detach\(\)"):
            net.params["W1"] = value
    before = mine.detach().clone()
    net.params["W1"] = mine.T.detach()  # shares the model's memory: trains it
    x, t = torch.ones(2, 4), torch.tensor([0, 2])
    SGD(0.1).update(net.params, net.gradient(x, t))
    assert mine.grad is None and not torch.equal(mine.detach(), before)
    assert torch.equal(mine.detach().T, net.params["W1"])
