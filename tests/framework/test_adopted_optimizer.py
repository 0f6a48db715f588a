"""framework/adopted_optimizer.py: a reader's own optimizer, written as the book's, in the
Trainer (it was "unknown optimizer <__main__.Momentum object ...>")."""

import math

import numpy as np
import pytest

import backends
from framework import optimizers
from framework.checkpoint import CheckpointError
from framework.adopted_optimizer import optimizer_for
from tests.framework.test_trainer import make_trainer
from tests.conftest import to_host


class BookMomentum:
    """The book's ``common/optimizer.py`` Momentum as a reader types it (NumPy's
    ``np.zeros_like`` as the array's own module's)."""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = backends.get_array_module(val).zeros_like(val)
        for key in params.keys():
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookAdam:
    """The book's Adam: its step count and ``lr_t`` on the host, as Python numbers
    (``math.sqrt``: NumPy's ``np.sqrt`` makes a NumPy scalar, which JAX takes as float64
    and array-api-strict refuses beside its arrays)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m, self.v = {}, {}
            for key, val in params.items():
                xp = backends.get_array_module(val)
                self.m[key] = xp.zeros_like(val)
                self.v[key] = xp.zeros_like(val)
        self.iter += 1
        lr_t = self.lr * math.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for key in params.keys():
            xp = backends.get_array_module(params[key])
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (xp.sqrt(self.v[key]) + 1e-7)


@pytest.mark.parametrize("mine, ours", [(lambda: BookMomentum(lr=0.1), lambda: optimizers.Momentum(lr=0.1)),
                                        (lambda: BookAdam(lr=0.01), lambda: optimizers.Adam(lr=0.01))])
def test_a_readers_own_optimizer_trains_as_ours(backend, mine, ours):
    """The book's Momentum and Adam, typed out, train in the Trainer to our optimizers'
    losses, eagerly (on JAX: not compiled, saying why)."""
    own = make_trainer(optimizer=mine(), epochs=2)
    own.train()
    same = make_trainer(optimizer=ours(), epochs=2)
    same.train()
    np.testing.assert_allclose(own.train_loss_list, same.train_loss_list, rtol=1e-5, atol=1e-6)
    assert own.step_mode.startswith("eager")
    if backend.name == "jax":
        assert "runs as written" in own.step_mode
    assert "(an optimizer of your own)" in repr(own.optimizer)


class CountingMomentum(BookMomentum):
    """The book's Momentum counting its updates in ``t``: a number of its own, an int."""

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr, momentum)
        self.t = 0

    def update(self, params, grads):
        super().update(params, grads)
        self.t += 1


@pytest.mark.parametrize("make", [lambda: BookMomentum(lr=0.1), lambda: BookAdam(lr=0.01),
                                  lambda: CountingMomentum(lr=0.1)])
def test_a_readers_own_optimizer_resumes_bit_for_bit(backend, tmp_path, make):
    """Its numbers (Adam's ``iter``, a count of its own: ints again, never floats) and its
    dicts of arrays (``v``, ``m``) are kept in the checkpoint and put back: a run stopped
    after epoch 2 of 4 ends as one never stopped."""
    whole = make_trainer(optimizer=make(), epochs=4)
    whole.train()
    path = str(tmp_path / "run.npz")
    make_trainer(optimizer=make(), epochs=2, checkpoint=path).train()
    resumed = make_trainer(optimizer=make(), epochs=4, checkpoint=path, resume=True)
    inner = resumed.optimizer.inner
    if isinstance(inner, (BookAdam, CountingMomentum)):  # the count where it stood
        count = "iter" if isinstance(inner, BookAdam) else "t"
        assert getattr(inner, count) == 2 * resumed.iter_per_epoch
    for name, value in vars(make()).items():  # each number of the kind it was made (an int)
        assert type(getattr(inner, name)) is type(value) or value is None, name
    resumed.train()
    assert resumed.train_loss_list == whole.train_loss_list
    for key, p in whole.network.params.items():
        np.testing.assert_array_equal(to_host(resumed.network.params[key]), to_host(p),
                                      err_msg=key)


def test_a_checkpoint_names_the_optimizer_it_was_trained_with(tmp_path):
    path = str(tmp_path / "run.npz")
    make_trainer(optimizer=BookAdam(), epochs=1, checkpoint=path).train()
    with pytest.raises(CheckpointError, match=r"was trained with BookAdam, not BookMomentum"):
        make_trainer(optimizer=BookMomentum(), epochs=2, checkpoint=path, resume=True)


def test_state_a_checkpoint_could_not_keep_is_named(tmp_path):
    """A list of arrays is no state a checkpoint can put back by name: said where the
    checkpoint is written, naming the attribute."""
    class Listed(BookMomentum):
        def update(self, params, grads):
            super().update(params, grads)
            self.history = [g for g in grads.values()]
    with pytest.raises(CheckpointError, match=r"Listed\.history is a list: a checkpoint keeps "
                                              r"an optimizer's numbers and its dicts of arrays"):
        make_trainer(optimizer=Listed(), epochs=1, checkpoint=str(tmp_path / "r.npz")).train()


def test_arrays_nested_in_lists_or_dicts_are_named_too():
    """An attribute holding arrays anywhere inside it (a list of lists, a dict of lists) is
    named as a flat list is; a list of numbers is left out, as other things are."""
    class Nested(BookMomentum):
        pass
    own = Nested()
    adopted = optimizer_for(own)
    g = np.ones(3)
    own.notes = [1, 2.5, "x"]
    assert "notes/0" not in adopted.state_dict()
    for value in ([[g]], {"W1": [g]}, ([1, (g,)],)):
        own.nested = value
        with pytest.raises(TypeError, match=r"^Nested\.nested is a (list|dict|tuple): a "
                                            r"checkpoint keeps"):
            adopted.state_dict()


def test_a_schedule_sets_the_readers_own_rate():
    """``trainer.optimizer.lr = ...`` (a callback's schedule, a script's ``--lr`` on resume)
    sets the reader's object's ``lr``; its float numbers are its settings."""
    own = BookMomentum(lr=0.1)
    trainer = make_trainer(optimizer=own, epochs=2,
                           callbacks=[lambda tr, record: setattr(tr.optimizer, "lr", 0.05)])
    trainer.train()
    assert own.lr == 0.05 and trainer.optimizer.lr == 0.05
    assert trainer.optimizer.settings() == {"lr": 0.05, "momentum": 0.9}


def test_what_is_no_optimizer_is_named():
    with pytest.raises(ValueError, match=r"optimizer=BookMomentum is a class; give an instance"):
        optimizer_for(BookMomentum)
    with pytest.raises(ValueError, match=r"optimizer=SGD is a class"):
        optimizer_for(optimizers.SGD)
    with pytest.raises(ValueError, match=r"optimizer_param is for optimizers given by name"):
        optimizer_for(BookMomentum(), {"lr": 0.1})
    with pytest.raises(ValueError, match=r"unknown optimizer 3; expected one of SGD, .* or an "
                                         r"optimizer of your own: an object with "
                                         r"update\(params, grads\)"):
        optimizer_for(3)
    assert isinstance(optimizer_for(optimizers.Adam()), optimizers.Adam)
