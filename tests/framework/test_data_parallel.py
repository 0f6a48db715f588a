"""framework/data_parallel.py: the data-parallel step, what it refuses, and the runs
themselves under a real mpiexec."""

import ast

import numpy as np
import pytest

import backends
from framework import data_parallel, distributed
from framework.layers import BatchNormalization, Dropout, SyncBatchNormalization
from models import MultiLayerNetExtend, TwoLayerNet
from tests.conftest import to_host
from tests.framework.test_distributed import assert_same_run, job, needs_mpi


# --- packing ----------------------------------------------------------------------

def test_gradients_and_loss_travel_in_one_buffer_and_come_back(backend):
    net = TwoLayerNet(6, 4, 3, seed=0)
    x = backend.asarray(np.random.default_rng(0).random((5, 6)), "float32")
    grads = net.gradient(x, backend.asarray(np.arange(5) % 3))
    flat, layout = data_parallel.pack(grads, net.last_loss, net.params)
    assert flat.shape == (sum(backends.size(g) for g in grads.values()) + 1,)
    assert backends.to_numpy(flat[-1]) == pytest.approx(float(net.last_loss))
    back = data_parallel.unpack(flat, layout)
    assert list(back) == list(net.params)
    for key, g in grads.items():
        np.testing.assert_array_equal(backends.to_numpy(back[key]), backends.to_numpy(g))
    # a loss of another dtype (a network of the user's own that sums in float64) travels
    # in the gradients' dtype: the buffer would become float64 (or, on the standard's
    # strict libraries, fail to join), and the update would take float64 gradients
    wide = backend.asarray(np.float64(float(net.last_loss)), "float64")
    flat, _ = data_parallel.pack(grads, wide, net.params)
    assert backends.dtype_name(flat.dtype) == "float32"
    assert backends.to_numpy(flat[-1]) == pytest.approx(float(net.last_loss))


# --- what a network must offer -----------------------------------------------------------

class OwnBatchNorm:
    name = "MyNorm"

    def forward(self, x):
        return x

    def backward(self, dout):
        return dout


class OwnNet:
    def __init__(self, *layers):
        self.params = {"W": np.zeros(1)}
        self.layers = dict(enumerate(layers))


def test_a_networks_own_batch_norm_or_dropout_is_named():
    net = OwnNet(OwnBatchNorm())
    assert data_parallel.exactness_problems(net) == [
        "MyNorm (OwnBatchNorm) is a batch norm of the network's own, which would normalise "
        "by each process's shard: use framework.layers.SyncBatchNormalization"]
    own_dropout = type("MyDropout", (), {"forward": lambda s, x: x,
                                         "backward": lambda s, d: d})()
    assert "MyDropout (MyDropout) is a dropout of the network's own" in \
        data_parallel.exactness_problems(OwnNet(own_dropout))[0]
    assert data_parallel.exactness_problems(OwnNet(Dropout(0.5))) == []
    # a name written with underscores, as Python's style for a class would not, found too
    own_norm = type("Batch_Norm", (), {"forward": lambda s, x: x, "backward": lambda s, d: d})()
    assert "Batch_Norm (Batch_Norm) is a batch norm of the network's own" in \
        data_parallel.exactness_problems(OwnNet(own_norm))[0]


def test_layers_held_as_attributes_or_in_a_list_are_looked_at_too():
    """A network of the user's own keeps its layers where it likes: in a list, or as
    attributes (``self.norm``, the book's ``self.lastLayer``); each is looked at, once."""
    own_dropout = type("MyDropout", (), {"forward": lambda s, x: x,
                                         "backward": lambda s, d: d})()
    norm = OwnBatchNorm()

    class AttributeNet:
        def __init__(self):
            self.params = {"W": np.zeros(1)}
            self.layers = [norm]           # a list, the layer named by its .name
            self.norm = norm               # the same layer again: named once
            self.drop = own_dropout        # an attribute alone
            self.lastLayer = Dropout(0.5)  # xpnet's: nothing to say
            self.sizes = [3, 4]            # not a layer
    assert data_parallel.exactness_problems(AttributeNet()) == [
        "MyNorm (OwnBatchNorm) is a batch norm of the network's own, which would normalise "
        "by each process's shard: use framework.layers.SyncBatchNormalization",
        "drop (MyDropout) is a dropout of the network's own, which would draw each process's "
        "mask alone: use framework.layers.Dropout, which draws its rows of the whole batch's "
        "mask"]


def test_xpnets_batch_norms_are_synchronised_in_place():
    net = MultiLayerNetExtend(6, [5, 4], 3, use_batchnorm=True, seed=0)
    gamma, running = net.params["gamma1"], net.layers["BatchNorm1"].running_mean
    assert len(data_parallel.exactness_problems(net)) == 2  # left per process: named
    assert data_parallel.exactness_problems(net, sync_batchnorm=False) == []
    done = data_parallel.synchronize_batch_norms(net, communicator="a communicator")
    assert done == ["BatchNorm1", "BatchNorm2"]
    layer = net.layers["BatchNorm1"]
    assert isinstance(layer, SyncBatchNormalization) and layer.communicator == "a communicator"
    assert layer.gamma is gamma and layer.running_mean is running  # the same arrays
    assert data_parallel.exactness_problems(net) == []
    assert data_parallel.synchronize_batch_norms(net, "another") == []  # once only


def test_a_network_that_took_gradients_before_its_batch_norms_were_synchronised(backend):
    """The network finds each gradient where a layer left it, a list made on first use:
    made again after the swap, or gamma's and beta's gradients would be read from the
    layers no longer in the network (stale, or None)."""
    rng = np.random.default_rng(0)
    x, t = backends.to_device(rng.random((8, 6)), "float32"), backends.to_device(rng.integers(0, 3, 8))
    net = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=0)
    alone = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=0)
    net.gradient(x, t)  # the list made, naming the unsynchronised layers
    data_parallel.synchronize_batch_norms(net, distributed.Communicator())  # a world of one
    x2 = backends.to_device(rng.random((8, 6)), "float32")
    alone.gradient(x, t)
    grads, want = net.gradient(x2, t), alone.gradient(x2, t)
    for key in ("gamma1", "beta1", "W1"):
        np.testing.assert_array_equal(to_host(grads[key]), to_host(want[key]), err_msg=key)


def test_sync_batchnorm_false_keeps_each_processs_own_statistics():
    """Asked for (``Trainer(sync_batchnorm=False)``): the batch norms stay the plain layer,
    nothing refused; with it, synchronised."""
    class Two:
        size = 2
    for sync in (False, True):
        net = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=0)
        data_parallel.prepare(net, Two(), "a communicator", sync_batchnorm=sync)
        assert type(net.layers["BatchNorm1"]) is (SyncBatchNormalization if sync
                                                   else BatchNormalization)


def test_a_world_of_one_is_left_alone():
    class One:
        size = 1
    net = OwnNet(OwnBatchNorm())
    data_parallel.prepare(net, One(), None)  # nothing to make exact, nothing refused
    assert isinstance(BatchNormalization, type)


# --- under mpiexec ------------------------------------------------------------------------

@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("net", ["subclass", "book"])
def test_a_users_own_network_trains_data_parallel_what_it_trains_alone(tmp_path, net, ranks):
    """A TwoLayerNet subclass overriding the book's gradient(self, x, t), and the book's
    chapter-5 TwoLayerNet written with framework.layers (not a models.base.Network): the
    same parameters, losses and accuracies as one process, every rank's gradient called
    on its shard of each batch of 10 only."""
    want, _ = job(tmp_path, net)
    got, done = job(tmp_path, net, ranks)
    assert f"data-parallel over {ranks} processes" in done.stdout
    assert_same_run(got, want)
    out = tmp_path / f"{net}-{ranks}.npz"
    shards = [(tmp_path / f"{out.name}.rank{r}").read_text() for r in range(ranks)]
    assert shards == (["5", "5"] if ranks == 2 else ["3", "3", "4"])


@needs_mpi
def test_an_optimizer_of_the_readers_own_trains_data_parallel_what_it_trains_alone(tmp_path):
    """Chapter 6's Momentum written by the reader, adopted by the Trainer, under
    ``mpiexec -n 2``: one process's run (the gradient summed once, then its update on
    every rank; check_replicas, on in the job, compares the ranks at each epoch's end)."""
    want, _ = job(tmp_path, "book", None, "--own-optimizer")
    got, done = job(tmp_path, "book", 2, "--own-optimizer")
    assert "data-parallel over 2 processes" in done.stdout
    assert_same_run(got, want)


@needs_mpi
def test_a_network_whose_own_dropout_would_change_the_run_is_refused_by_name(tmp_path):
    _, done = job(tmp_path, "book-own-dropout", 2, check=False, timeout=60)
    assert done.returncode != 0
    assert "Dropout1 (MyDropout) is a dropout of the network's own" in done.stderr, \
        done.stdout + done.stderr


@needs_mpi
def test_unseeded_dropout_draws_from_rank_0s_key_on_every_rank(tmp_path):
    """Each rank builds its dropout layers from its own entropy; the Trainer gives every
    rank rank 0's keys (and check_replicas, on in the job, compares the layer state at
    each epoch's end), so every rank draws rank 0's masks."""
    out = tmp_path / "unseeded-3.npz"
    job(tmp_path, "dropout", 3, "--unseeded", "--epochs", "2", name="unseeded")
    keys = [ast.literal_eval((tmp_path / f"{out.name}.keys{r}").read_text()) for r in range(3)]
    assert keys[0] and keys[1] == keys[0] and keys[2] == keys[0]
