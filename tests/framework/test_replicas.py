"""framework/replicas.py: what data-parallel ranks must share. The checks under a real
mpiexec (ranks given other networks, optimizers or data) are in test_distributed.py;
here, what a rank says, with the ranks' answers given as a collective would give them."""

import types

import numpy as np
import pytest

from framework import distributed, replicas
from framework.optimizers import Adam
from models import TwoLayerNet
from tests.conftest import to_host


class Gathered(distributed.Communicator):
    """A communicator whose ``everyone`` answers with the ranks' values given."""

    def __init__(self, values):
        self.values = values

    def everyone(self, value):
        return self.values


def world_of(values):
    return types.SimpleNamespace(size=len(values), communicator=Gathered(values))


def test_a_network_is_described_by_its_class_and_arguments():
    assert replicas.describe(TwoLayerNet(4, 3, 2)) == (
        "TwoLayerNet(input_size=4, hidden_size=3, output_size=2)")


def test_a_network_without_config_is_described_by_its_parameters_shapes():
    """The book's own nets have no config(): ranks that built them of other sizes differ in
    their parameters' shapes, which the description holds."""
    class BookNet:
        def __init__(self, hidden):
            self.params = {"W1": np.zeros((4, hidden)), "b1": np.zeros(hidden)}
    assert replicas.describe(BookNet(3)) == "BookNet with parameters W1 (4, 3), b1 (3,)"
    assert replicas.describe(BookNet(5)) != replicas.describe(BookNet(3))


def test_ranks_that_agree_pass_and_the_first_that_differs_is_named():
    replicas.same_everywhere(world_of(["Adam(lr=0.01)"] * 3), "optimizers", "Adam(lr=0.01)")
    with pytest.raises(ValueError, match=r"the processes built different optimizers: rank 0 "
                                         r"Adam\(lr=0.01\), rank 2 SGD\(lr=0.1\); every "
                                         r"process of a data-parallel run needs the same"):
        replicas.same_everywhere(world_of(["Adam(lr=0.01)", "Adam(lr=0.01)", "SGD(lr=0.1)",
                                           "SGD(lr=0.2)"]), "optimizers", "Adam(lr=0.01)")


def test_a_world_of_one_prepares_without_changing_anything():
    net = TwoLayerNet(4, 3, 2, seed=0)
    before = {k: to_host(v).copy() for k, v in net.params.items()}
    world = distributed.World(0, 1, 0, distributed.Communicator())
    x = np.zeros((8, 4), np.float32)
    replicas.prepare(world, world.communicator, net, Adam(), {"x_train": x})
    for key, value in before.items():
        np.testing.assert_array_equal(to_host(net.params[key]), value)


class OtherRankHoldsATail(Gathered):
    """Every rank built the same network and optimizer; the other rank's data differs
    from row ``start`` on (a file cut short and padded, say). Each row of the data holds
    its own index, so ``same`` answers as the collective would for the rows it is shown."""

    def __init__(self, start):
        super().__init__(None)
        self.start = start

    def everyone(self, value):
        return [value, value]

    def same(self, a):
        return not np.any(a >= self.start)


def test_data_that_differs_only_in_its_later_rows_is_found():
    """The rows compared are spread over the whole array: data equal in its first rows
    and different after them is refused, before any parameter is broadcast."""
    net = TwoLayerNet(4, 3, 2, seed=0)
    communicator = OtherRankHoldsATail(start=700)
    world = types.SimpleNamespace(size=2, communicator=communicator)
    x = np.repeat(np.arange(1000, dtype=np.float32)[:, None], 4, axis=1)
    with pytest.raises(ValueError, match=r"the 2 processes were given different x_train"):
        replicas.prepare(world, communicator, net, Adam(), {"x_train": x})


class RankZeroSendsNewArrays(Gathered):
    """A communicator that answers ``broadcast_arrays`` as it does for JAX's immutable
    arrays: new arrays holding rank 0's values (here: every float plus 1; dropout's
    integer generator state copied)."""

    def __init__(self):
        super().__init__(None)

    def everyone(self, value):
        return [value, value]

    def same(self, a):
        return True

    def broadcast_arrays(self, arrays):
        import backends
        return {name: a + 1 if backends.dtype_kind(a.dtype) == "f" else backends.copy(a)
                for name, a in arrays.items()}


def test_rank_zeros_parameters_and_state_given_as_new_arrays_are_put_in_place(backend):
    """Where the broadcast makes new arrays (JAX), they are put into ``params`` (and so
    into the layers, which read them from there) and into the layers' state."""
    from models import MultiLayerNetExtend
    net = MultiLayerNetExtend(4, [3], 2, use_batchnorm=True, use_dropout=True, seed=0)
    before = {k: to_host(v).copy() for k, v in net.params.items()}
    state = {k: to_host(v).copy() for k, v in net.state().items()}
    communicator = RankZeroSendsNewArrays()
    world = types.SimpleNamespace(size=2, communicator=communicator)
    replicas.prepare(world, communicator, net, Adam(), {"x_train": np.zeros((8, 4))})
    for key, value in before.items():
        np.testing.assert_array_equal(to_host(net.params[key]), value + 1)
    np.testing.assert_array_equal(to_host(net.layers["Affine1"].W), before["W1"] + 1)
    floats = [key for key, value in state.items() if value.dtype.kind == "f"]
    assert floats  # batch norm's running averages
    for key, value in state.items():
        np.testing.assert_array_equal(to_host(net.state()[key]),
                                      value + 1 if key in floats else value)


class SomeArraysDiffer(Gathered):
    """``same`` answers False for the arrays given (by identity): those differ between
    the ranks."""

    def __init__(self, differing):
        super().__init__(None)
        self.differing = differing

    def same(self, a):
        return not any(a is d for d in self.differing)


def test_differences_name_parameters_and_layer_state_that_drifted():
    """The epoch's-end check names a batch norm's running average that drifted apart, as
    it names a parameter."""
    from models import MultiLayerNetExtend
    net = MultiLayerNetExtend(4, [3], 2, use_batchnorm=True, seed=0)
    assert replicas.differences(SomeArraysDiffer([]), net) == []
    drifted = [net.params["b1"], net.layers["BatchNorm1"].running_mean]
    assert replicas.differences(SomeArraysDiffer(drifted), net) == [
        "b1", "state BatchNorm1/running_mean"]
