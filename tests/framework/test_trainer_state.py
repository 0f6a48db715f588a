"""framework/trainer_state.py: a run's state in its checkpoint, and the files it refuses."""

import contextlib
import json

import numpy as np
import pytest

from framework import trainer_state
from framework.checkpoint import CheckpointError
from framework.optimizers import Momentum
from models import TwoLayerNet
from tests.conftest import to_host
from tests.framework.test_trainer import make_trainer


def params_of(trainer):
    return {k: to_host(v).copy() for k, v in trainer.network.params.items()}


def assert_untouched(trainer, params):
    assert trainer.iteration == 0 and trainer.current_epoch == 0 and trainer.train_loss_list == []
    assert trainer._resume_position == 0
    for key, value in params.items():
        np.testing.assert_array_equal(to_host(trainer.network.params[key]), value, err_msg=key)


def test_an_epoch_end_round_trip_restores_the_run(tmp_path):
    path = str(tmp_path / "run.npz")
    first = make_trainer(checkpoint=path, epochs=2, optimizer=Momentum(lr=0.05, momentum=0.8))
    first.train(epochs=1)
    other = make_trainer(net_seed=7, epochs=2, optimizer=Momentum(lr=0.5))
    assert trainer_state.restore(other, path) == (0, None)
    assert (other.optimizer.lr, other.optimizer.momentum) == (0.05, 0.8)  # the run's settings
    assert other.iteration == first.iteration == 20 and other.current_epoch == 1
    assert other.train_loss_list == first.train_loss_list
    assert other.history == first.history and other.test_acc_list == first.test_acc_list
    assert other.batches.rng.bit_generator.state == first.batches.rng.bit_generator.state
    for key, value in params_of(first).items():
        np.testing.assert_array_equal(to_host(other.network.params[key]), value, err_msg=key)


def parameters_only(path):
    make_trainer().network.save_params(path)


def a_run_of_sgd(path):
    make_trainer(checkpoint=path, epochs=1).train()


def an_epoch_stopped_at_5_with_4_losses(path):
    saver = make_trainer(epochs=2)
    saver.batches.start_epoch()  # as the loop does before its steps
    trainer_state.save(saver, path, position=5, epoch_losses=np.zeros(4, np.float32))


def a_run_of_sgd_dropping_its_short_batches(path):
    make_trainer(checkpoint=path, epochs=1, mini_batch_size=30, drop_last=True).train()


@contextlib.contextmanager
def rewritten_header(path):
    """The checkpoint's header as a dict to change within, written back after (the file as
    another version of xpnet, or a damaged one, would have it)."""
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["meta"]))
    yield meta
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_drop_last_with_no_short_batch_resumes_either_way(tmp_path):
    """400 samples in batches of 20 leave no short batch out: ``drop_last`` draws what its
    absence draws, so the checkpoint records none, and the run resumes with either
    setting and ends with an uninterrupted run's bits."""
    path = str(tmp_path / "run.npz")
    full = make_trainer(epochs=2, seed=5)
    full.train()
    make_trainer(checkpoint=path, epochs=2, seed=5, drop_last=True).train(epochs=1)
    resumed = make_trainer(checkpoint=path, resume=True, epochs=2, seed=5, net_seed=9)
    assert resumed.batches.describe()["drop_last"] is False and resumed.iteration == 20
    resumed.train()
    assert resumed.train_loss_list == full.train_loss_list


def test_a_checkpoint_from_before_drop_last_resumes(tmp_path):
    """A checkpoint written before ``drop_last`` existed describes its batches without it:
    it drew them as ``drop_last=False`` does, and resumes so, to an uninterrupted run's
    bits; a resume with ``drop_last=True`` there is refused (it would draw otherwise)."""
    path = str(tmp_path / "run.npz")
    full = make_trainer(epochs=2, seed=5, mini_batch_size=30)
    full.train()
    make_trainer(checkpoint=path, epochs=2, seed=5, mini_batch_size=30).train(epochs=1)
    with rewritten_header(path) as meta:
        assert meta["trainer"]["batches"].pop("drop_last") is False
    resumed = make_trainer(checkpoint=path, resume=True, epochs=2, seed=5, mini_batch_size=30,
                           net_seed=9)
    resumed.train()
    assert resumed.train_loss_list == full.train_loss_list
    with pytest.raises(CheckpointError, match=r"drew its batches otherwise \(drop_last False "
                                              r"-> True\)"):
        make_trainer(checkpoint=path, resume=True, epochs=2, seed=5, mini_batch_size=30,
                     drop_last=True)


def test_a_process_other_than_the_first_writes_no_checkpoint(tmp_path):
    """In a data-parallel world every process holds the same run, and the first alone
    writes it (the others would write the same file again, over a shared folder)."""
    path = tmp_path / "run.npz"
    trainer = make_trainer(epochs=1)

    class Second:
        is_root, size, rank = False, 2, 1
    trainer.world = Second()
    trainer_state.save(trainer, str(path))
    assert not path.exists() and list(tmp_path.iterdir()) == []


def a_run_of_sgd_whose_settings_read(settings):
    """A writer: a run of SGD whose checkpoint's optimizer settings are then ``settings``."""
    def write(path):
        a_run_of_sgd(path)
        with rewritten_header(path) as meta:
            meta["trainer"]["optimizer_settings"] = settings
    return write


@pytest.mark.parametrize("write, options, refusal", [
    (parameters_only, {}, "holds parameters only, no trainer state"),
    (a_run_of_sgd, {"optimizer": Momentum(lr=0.1)}, "was trained with SGD, not Momentum"),
    (an_epoch_stopped_at_5_with_4_losses, {},
     "stopped 5 steps into an epoch but holds no matching epoch_losses"),
    (a_run_of_sgd, {"mini_batch_size": 10},
     r"drew its batches otherwise \(mini_batch_size 20 -> 10\)"),
    (a_run_of_sgd, {"sampling": "choice"}, r"drew its batches otherwise \(sampling 'epoch' -> "
                                           r"'choice'\)"),
    (a_run_of_sgd_dropping_its_short_batches, {"mini_batch_size": 30},
     r"drew its batches otherwise \(drop_last True -> False\); resume with the same data, "
     r"mini_batch_size, sampling and drop_last"),
    (a_run_of_sgd, {"net": TwoLayerNet(20, 16, 4, seed=3, dtype="float64")},
     r"the run trained in float32, the network is float64; resume it with a float32 network, "
     r"or start a new run from its parameters \(network.load_params\(path\) casts"),
    (a_run_of_sgd_whose_settings_read({"lr": 0.1, "momentum": 0.9}), {},
     r"holds the optimizer settings \{'lr': 0.1, 'momentum': 0.9\}; expected numbers for lr "
     r"\(SGD\)"),
    (a_run_of_sgd_whose_settings_read({"lr": "fast"}), {},
     "holds the optimizer setting lr='fast'; expected a finite number"),
    (a_run_of_sgd_whose_settings_read({"lr": None}), {},
     "holds the optimizer setting lr=None; expected a finite number"),
    (a_run_of_sgd_whose_settings_read({"lr": True}), {},  # JSON's true: Python's 1
     "holds the optimizer setting lr=True; expected a finite number"),
    (a_run_of_sgd_whose_settings_read({"lr": float("inf")}), {},  # JSON's Infinity
     "holds the optimizer setting lr=inf; expected a finite number"),
], ids=["parameters-only", "another-optimizer", "epoch-losses-missing", "another-batch-size",
        "another-sampling", "drop-last-off", "another-dtype", "settings-of-another-optimizer", "a-setting-not-a-number",
        "a-setting-null", "a-setting-true", "a-setting-infinite"])
def test_a_file_that_cannot_resume_is_refused_before_anything_changes(tmp_path, write, options,
                                                                      refusal):
    path = str(tmp_path / "run.npz")
    write(path)
    trainer = make_trainer(net_seed=3, epochs=2, **options)
    before = params_of(trainer)
    with pytest.raises(CheckpointError, match=refusal):
        trainer_state.restore(trainer, path)
    assert_untouched(trainer, before)


def test_a_hyperparameter_that_is_not_a_number_is_left_out_of_the_checkpoint(tmp_path):
    """A user's optimizer may list a setting a checkpoint cannot hold (a list of milestones):
    the run is saved and resumed with its numbers; saving must not fail at an epoch's end."""
    from framework.optimizers import SGD

    class Milestones(SGD):
        hyperparameters = ("lr", "milestones")

        def __init__(self, lr=0.1):
            super().__init__(lr)
            self.milestones = [2, 4]
    path = str(tmp_path / "run.npz")
    make_trainer(checkpoint=path, epochs=1, optimizer=Milestones(0.05)).train()
    resumed = make_trainer(checkpoint=path, resume=True, epochs=2, optimizer=Milestones(0.5))
    assert resumed.iteration == 20 and resumed.optimizer.lr == 0.05
    assert resumed.optimizer.milestones == [2, 4]
