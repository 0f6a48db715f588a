"""framework/trainer.py: the loop, its reports, checkpoints, resume and the NaN guard."""

import hashlib
import os
import re
import signal
import warnings

import numpy as np
import pytest

from framework import steps
from framework.datasets import load_fashion_mnist
from framework.optimizers import Momentum
from framework.trainer import Trainer, TrainingInterrupted
from models import MultiLayerNetExtend, TwoLayerNet
from tests.conftest import to_host

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def blobs(n=400, d=20, classes=4, seed=0):
    """Separable Gaussian blobs: a problem a two-layer net learns in a few epochs."""
    centers = np.random.default_rng(1234).normal(0, 1.0, (classes, d))  # shared by every split
    rng = np.random.default_rng(seed)
    t = rng.integers(0, classes, n)
    x = (centers[t] + rng.normal(0, 0.7, (n, d))).astype(np.float32)
    return x, t.astype(np.uint8)


def make_trainer(tmp_path=None, seed=0, net_seed=0, net=None, **kw):
    x, t = blobs()
    xt, tt = blobs(n=100, seed=1)
    net = net or TwoLayerNet(20, 16, 4, seed=net_seed, weight_init_std=0.1)
    options = dict(epochs=3, mini_batch_size=20, optimizer="sgd", verbose=False, seed=seed)
    options.update(kw)
    if isinstance(options["optimizer"], str):
        options.setdefault("optimizer_param", {"lr": 0.1})
    return Trainer(net, x, t, xt, tt, **options)


def test_gpu_memory_is_counted_by_pool_on_cupy_only(backend):
    trainer = make_trainer(epochs=1)
    trainer.train()
    pools = trainer.gpu_pools()
    if backend.name != "cupy":
        assert pools == {} and trainer.gpu_pool_bytes() == 0
        return
    assert set(pools) == {"default", "scratch", "graph"}
    assert pools["default"] >= trainer.batches.x.nbytes  # the data lives there
    assert (pools["graph"] > 0) == (trainer.step_mode == "cuda-graph")
    assert trainer.gpu_pool_bytes() == sum(pools.values())


def test_loss_falls_and_history_matches_epochs(backend, capsys):
    trainer = make_trainer()
    history = trainer.train()
    assert capsys.readouterr() == ("", "")  # verbose=False is silent
    assert history["epoch"] == [1, 2, 3] and history["iteration"] == [20, 40, 60]
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert len(trainer.train_loss_list) == 60
    assert all(type(v) is float for v in trainer.train_loss_list)
    assert all(type(v) is float for v in trainer.train_acc_list + trainer.test_acc_list)
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 3
    assert trainer.test_acc_list[-1] > 0.9
    assert type(trainer.final_test_acc) is float
    for epoch, loss in enumerate(history["loss"]):  # the mean of all of the epoch's steps
        assert loss == pytest.approx(np.mean(trainer.train_loss_list[20 * epoch:20 * (epoch + 1)]),
                                     rel=1e-6)


def test_iters_sets_the_length_and_last_epoch_is_partial(backend):
    trainer = make_trainer(iters=50)  # 20 steps per epoch: 20, 20, 10
    trainer.train()
    assert trainer.epochs == 3
    assert trainer.history["iteration"] == [20, 40, 50]
    assert len(trainer.train_loss_list) == 50


def test_drop_last_leaves_out_each_epochs_short_batch(backend):
    """51 samples in batches of 10: the book's epoch ends with a step of one sample, which
    batch norm cannot normalise (one sample is its own mean). drop_last=True leaves it out:
    five full steps an epoch, and the sample left out is another each epoch."""
    x, t = blobs(n=51)
    xt, tt = blobs(n=20, seed=1)
    seen = []

    class Watched(MultiLayerNetExtend):
        def gradient(self, x, t):
            seen.append(to_host(x)[:, 0].tolist())
            return super().gradient(x, t)
    kept = {}
    for drop_last in (False, True):
        seen.clear()
        # batch norm only where the short batch is left out: the Trainer refuses it else
        net = Watched(20, [8], 4, use_batchnorm=drop_last, seed=0)
        trainer = Trainer(net, x, t, xt, tt, epochs=2, mini_batch_size=10, verbose=False,
                          seed=0, drop_last=drop_last, graph=False)
        trainer.train()
        kept[drop_last] = [sum(seen[i:i + trainer.iter_per_epoch], [])
                           for i in (0, trainer.iter_per_epoch)]
        sizes = [len(batch) for batch in seen]
        assert sizes == ([10] * 10 if drop_last else ([10] * 5 + [1]) * 2)
        assert trainer.history["iteration"] == ([5, 10] if drop_last else [6, 12])
    first, second = kept[True]
    everything = sorted(x[:, 0].tolist())
    assert len(set(first)) == len(set(second)) == 50 and set(first) != set(second)
    assert all(sorted(epoch) == everything for epoch in kept[False])
    # the same permutations: dropping the last batch leaves the others as they were
    assert [epoch[:50] for epoch in kept[False]] == kept[True]
    small = Trainer(TwoLayerNet(20, 8, 4, seed=0), x[:7], t[:7], xt, tt, epochs=1,
                    mini_batch_size=10, verbose=False, drop_last=True)
    assert small.iter_per_epoch == 1  # a set smaller than one batch still trains on it all


def test_a_batch_norm_batch_of_one_sample_is_refused_before_training(backend):
    """A batch of one sample is its own mean: batch norm's output is beta, no gradient
    reaches the layers below and the running variance is pulled towards 0, without a word
    (the book's layer, and ours before). The Trainer names it before the run, with what to
    change; the layer computes one in training with a warning (the book's
    ch06/batch_norm_gradient_check.py checks such a batch), and in inference as any."""
    x, t = blobs(n=51)
    net = MultiLayerNetExtend(20, [8], 4, use_batchnorm=True, seed=0)
    for kwargs, said in (
            ({}, r"each epoch's last batch would hold one sample \(51 samples in batches of "
                 r"10\), and MultiLayerNetExtend normalises over the batch \(BatchNorm1\): "
                 r".* pass drop_last=True"),
            ({"mini_batch_size": 1}, r"mini_batch_size=1, and .* batches of at least 2"),
            ({"x_train": x[:1], "t_train": t[:1]}, r"the training set holds one sample")):
        args = {"x_train": x, "t_train": t, "mini_batch_size": 10, **kwargs}
        with pytest.raises(ValueError, match=r"^Trainer: " + said):
            Trainer(net, args["x_train"], args["t_train"], x, t, epochs=1, verbose=False,
                    mini_batch_size=args["mini_batch_size"])
    for fine in ({"drop_last": True}, {"sampling": "choice"}, {"mini_batch_size": 17}):
        Trainer(net, x, t, x, t, epochs=1, verbose=False, **{"mini_batch_size": 10, **fine})
    Trainer(TwoLayerNet(20, 8, 4, seed=0), x, t, x, t, epochs=1, mini_batch_size=10,
            verbose=False)  # no batch norm: the book's short batch, as ever
    from framework.layers.batch_norm import BatchOfOneWarning
    with pytest.warns(BatchOfOneWarning, match=r"^BatchNorm1: a training batch of one sample "
                                               r"\(shape \(1, 8\)\) is its own mean"):
        net.gradient(backend.asarray(x[:1]), backend.asarray(t[:1]))  # as the book computes it
    assert 0 <= net.accuracy(backend.asarray(x[:1]), backend.asarray(t[:1])) <= 1  # inference
    import warnings
    with warnings.catch_warnings():  # an empty batch: NumPy's "invalid value" warnings before
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^BatchNorm1: an empty training batch \(shape "
                                             r"\(0, 8\)\) has no mean to normalise by"):
            net.gradient(backend.asarray(x[:0]), backend.asarray(t[:0]))


def test_choice_sampling_and_evaluation_subset(backend):
    seen = []

    def first_50(trainer, record):  # the accuracies of the first 50 samples of each set
        count = trainer.network.accuracy
        seen.append(((record["train_acc"], record["test_acc"]),
                     (count(trainer.batches.x[:50, ...], trainer.batches.t[:50, ...]),
                      count(trainer.x_test[:50, ...], trainer.t_test[:50, ...]))))
    x, t = blobs()
    xt, tt = blobs(n=100, seed=1)
    tt[50:] = (tt[50:] + 1) % 4  # the test set's second half mislabelled: read, it would show
    trainer = Trainer(TwoLayerNet(20, 16, 4, seed=0, weight_init_std=0.1), x, t, xt, tt,
                      epochs=1, mini_batch_size=20, optimizer="sgd", optimizer_param={"lr": 0.1},
                      sampling="choice", evaluate_sample_num_per_epoch=50, verbose=False,
                      seed=0, callbacks=[first_50])
    trainer.train()
    assert trainer.iter_per_epoch == 20 and len(trainer.train_loss_list) == 20
    acc = trainer.test_acc_list[0]
    assert acc * 50 == pytest.approx(round(acc * 50)) and acc > 0.9  # the first 50 samples
    [(recorded, first)] = seen
    assert recorded == first
    assert trainer.final_test_acc < 0.75  # the final accuracy reads the whole test set


def test_verbose_prints_epoch_lines(backend, capsys):
    make_trainer(verbose=True, epochs=2).train()
    err = capsys.readouterr()
    lines = [line for line in (err.out + err.err).splitlines() if line.startswith("epoch ")]
    pattern = r"epoch \d/2  loss \d\.\d{4}  train acc \d\.\d{4}  test acc \d\.\d{4}  \(\d+\.\d s\)"
    assert len(lines) == 2 and all(re.fullmatch(pattern, line) for line in lines), lines


def test_same_seed_same_run(backend):
    a, b = make_trainer(seed=3), make_trainer(seed=3)
    a.train()
    b.train()
    assert a.train_loss_list == b.train_loss_list
    for key in a.network.params:
        np.testing.assert_array_equal(to_host(a.network.params[key]), to_host(b.network.params[key]))


class Interrupt(Exception):
    pass


def test_resume_equals_an_uninterrupted_run(backend, tmp_path):
    path = str(tmp_path / "run.npz")
    options = dict(epochs=4, seed=5)
    full = make_trainer(optimizer=Momentum(lr=0.05), **options)
    full.train()

    def stop_after_two(trainer, record):
        if record["epoch"] == 2:
            raise Interrupt
    first = make_trainer(checkpoint=path, callbacks=[stop_after_two], optimizer=Momentum(lr=0.05),
                         **options)
    with pytest.raises(Interrupt):
        first.train()

    resumed = make_trainer(checkpoint=path, resume=True, net_seed=99, optimizer=Momentum(lr=0.05),
                           **options)
    assert resumed.iteration == 40 and resumed.current_epoch == 2
    resumed.train()
    assert resumed.history["epoch"] == [1, 2, 3, 4]
    # bit for bit: same batches, same optimizer state, same arithmetic
    assert resumed.train_loss_list == full.train_loss_list
    assert resumed.test_acc_list == full.test_acc_list
    for key in full.network.params:
        np.testing.assert_array_equal(to_host(resumed.network.params[key]),
                                      to_host(full.network.params[key]))


class BookStyleNet:
    """A network of the user's own as the book writes one (ch05/two_layer_net.py): params,
    layers, predict, loss, accuracy and gradient; no config() and no dtype."""

    def __init__(self, seed):
        import backends
        from collections import OrderedDict
        from framework.layers import Affine, Relu, SoftmaxWithLoss
        rng = np.random.default_rng(seed)
        self.params = {k: backends.to_device(v, "float32") for k, v in (
            ("W1", 0.1 * rng.standard_normal((20, 16))), ("b1", np.zeros(16)),
            ("W2", 0.1 * rng.standard_normal((16, 4))), ("b2", np.zeros(4)))}
        self.layers = OrderedDict(Affine1=Affine(self.params["W1"], self.params["b1"]),
                                  Relu1=Relu(),
                                  Affine2=Affine(self.params["W2"], self.params["b2"]))
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x, t):
        import backends
        xp = backends.get_array_module(x)
        hits = xp.argmax(self.predict(x), axis=1) == t
        return float(xp.sum(xp.astype(hits, xp.float32))) / x.shape[0]

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {"W1": self.layers["Affine1"].dW, "b1": self.layers["Affine1"].db,
                "W2": self.layers["Affine2"].dW, "b2": self.layers["Affine2"].db}


@pytest.mark.backends("numpy", "torch", "array_api_strict")  # arrays changed in place
def test_a_network_of_the_users_own_keeps_checkpoints_and_resumes(backend, tmp_path):
    """A book-style network trained with checkpoint= failed at its first epoch's end,
    after the epoch's work: "'BookStyleNet' object has no attribute 'config'". Its
    checkpoint names its class and holds its parameters, and the run resumes bit for bit;
    a file of another network is refused."""
    from framework.checkpoint import CheckpointError
    path = str(tmp_path / "run.npz")
    full = make_trainer(net=BookStyleNet(0), epochs=3, seed=5)
    full.train()

    def stop_after_one(trainer, record):
        raise Interrupt
    first = make_trainer(net=BookStyleNet(0), checkpoint=path, callbacks=[stop_after_one],
                         epochs=3, seed=5)
    with pytest.raises(Interrupt):
        first.train()
    resumed = make_trainer(net=BookStyleNet(9), checkpoint=path, resume=True, epochs=3, seed=5)
    assert resumed.iteration == 20
    resumed.train()
    assert resumed.train_loss_list == full.train_loss_list
    for key in full.network.params:
        np.testing.assert_array_equal(to_host(resumed.network.params[key]),
                                      to_host(full.network.params[key]), err_msg=key)
    with pytest.raises(CheckpointError, match=r"checkpoint is BookStyleNet, but the network is "
                                              r"TwoLayerNet\{'input_size': 20"):
        make_trainer(checkpoint=path, resume=True, epochs=3, seed=5)


def test_a_schedule_resumes_at_the_rate_it_had_reached(backend, tmp_path):
    """A callback halves the learning rate at every epoch end. Stopped after two epochs and
    resumed with the optimizer built afresh (its first rate), the run goes on at the rate
    it had reached, and ends with an uninterrupted run's bits."""
    path = str(tmp_path / "run.npz")

    def halve(trainer, record):
        trainer.optimizer.lr /= 2

    def stop_after_two(trainer, record):
        if record["epoch"] == 2:
            raise Interrupt
    full = make_trainer(optimizer=Momentum(lr=0.05), callbacks=[halve], epochs=4, seed=5)
    full.train()
    first = make_trainer(checkpoint=path, callbacks=[halve, stop_after_two],
                         optimizer=Momentum(lr=0.05), epochs=4, seed=5)
    with pytest.raises(Interrupt):
        first.train()
    resumed = make_trainer(checkpoint=path, resume=True, net_seed=99, callbacks=[halve],
                           optimizer=Momentum(lr=0.05), epochs=4, seed=5)
    assert resumed.optimizer.lr == 0.05 / 4
    resumed.train()
    assert resumed.optimizer.lr == full.optimizer.lr == 0.05 / 16
    assert resumed.train_loss_list == full.train_loss_list
    for key in full.network.params:
        np.testing.assert_array_equal(to_host(resumed.network.params[key]),
                                      to_host(full.network.params[key]), err_msg=key)


def test_a_schedule_that_sets_a_bad_rate_stops_the_run_at_once(tmp_path):
    """A callback setting ``lr = "0.01"`` ended the run in NumPy's words at the next step;
    ``-0.05`` trained uphill to the end without a word. The rate is refused where it is set,
    at that epoch's end, whose checkpoint is already written (before the callbacks)."""
    path = str(tmp_path / "run.npz")

    def bad(trainer, record):
        trainer.optimizer.lr = -0.05
    trainer = make_trainer(checkpoint=path, callbacks=[bad], epochs=3)
    with pytest.raises(ValueError, match=r"^SGD: lr must be a finite number in \(0, inf\), "
                                         r"got -0\.05$"):
        trainer.train()
    assert trainer.current_epoch == 1 and trainer.optimizer.lr == 0.1
    resumed = make_trainer(checkpoint=path, resume=True, epochs=3)
    assert resumed.current_epoch == 1  # the epoch before the bad rate, kept


def deep_net(seed):
    return MultiLayerNetExtend(20, [16, 16], 4, use_batchnorm=True, use_dropout=True,
                               dropout_ration=0.2, weight_decay_lambda=0.01, seed=seed)


def test_deep_net_trains_in_training_mode_and_evaluates_in_inference(backend):
    trainer = make_trainer(net=deep_net(0), epochs=4, optimizer=Momentum(lr=0.05))
    trainer.train()
    assert trainer.train_loss_list[-1] < 0.5 * trainer.train_loss_list[0]
    assert trainer.test_acc_list[-1] > 0.9
    net = trainer.network
    counter = int(to_host(net.layers["Dropout1"].counter)[0])
    assert counter == trainer.iteration  # one mask per training step, none per evaluation
    assert float(to_host(net.layers["BatchNorm1"].running_var).std()) > 0  # moved by training


def test_deep_net_resume_equals_an_uninterrupted_run(backend, tmp_path):
    """Batch norm's running averages and dropout's generators travel in the checkpoint."""
    path = str(tmp_path / "run.npz")
    options = dict(epochs=4, seed=5)
    full = make_trainer(net=deep_net(0), optimizer=Momentum(lr=0.05), **options)
    full.train()

    def stop_after_two(trainer, record):
        if record["epoch"] == 2:
            raise Interrupt
    first = make_trainer(net=deep_net(0), checkpoint=path, callbacks=[stop_after_two],
                         optimizer=Momentum(lr=0.05), **options)
    with pytest.raises(Interrupt):
        first.train()
    resumed = make_trainer(net=deep_net(99), checkpoint=path, resume=True,
                           optimizer=Momentum(lr=0.05), **options)
    resumed.train()
    assert resumed.train_loss_list == full.train_loss_list
    for key in full.network.params:
        np.testing.assert_array_equal(to_host(resumed.network.params[key]),
                                      to_host(full.network.params[key]), err_msg=key)
    for key, value in full.network.state().items():
        np.testing.assert_array_equal(to_host(resumed.network.state()[key]), to_host(value),
                                      err_msg=key)


def test_resume_without_a_file_starts_fresh(backend, tmp_path):
    trainer = make_trainer(checkpoint=str(tmp_path / "new.npz"), resume=True, epochs=1)
    assert trainer.iteration == 0
    trainer.train()
    assert os.path.exists(tmp_path / "new.npz")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(backend, tmp_path):
    path = tmp_path / "run.npz"
    saved = {}

    def blow_up_after_first_epoch(trainer, record):
        saved["params"] = {k: to_host(v).copy() for k, v in trainer.network.params.items()}
        trainer.optimizer.lr = 1e6
    trainer = make_trainer(checkpoint=str(path), callbacks=[blow_up_after_first_epoch], epochs=3)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as info:
        trainer.train()
    msg = str(info.value)
    step = int(re.search(r"at step (\d+) of 60 \(epoch 2\)", msg).group(1))
    assert 21 <= step <= 40
    assert f"the last good checkpoint, {path} (after epoch 1), was left as it was" in msg
    assert "learning rate" in msg
    # the file holds the run after epoch 1, going on at the rate the callback set
    resumed = make_trainer(checkpoint=str(path), resume=True, net_seed=9, epochs=3)
    assert resumed.iteration == 20 and resumed.optimizer.lr == 1e6
    for key, value in saved["params"].items():
        np.testing.assert_array_equal(to_host(resumed.network.params[key]), value, err_msg=key)


def test_nan_loss_before_the_first_checkpoint_says_none_was_written(backend, tmp_path):
    path = tmp_path / "run.npz"
    trainer = make_trainer(checkpoint=str(path), optimizer_param={"lr": 1e30}, epochs=2)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as info:
        trainer.train()
    assert f"; no checkpoint had been written yet ({path} is written at each epoch's end)" \
        in str(info.value)
    assert not path.exists()


@pytest.mark.parametrize("verbose, terminal, steps", [(False, True, 20), (True, True, 16),
                                                     (True, False, 20)])
def test_nan_guard_with_a_huge_learning_rate(backend, monkeypatch, verbose, terminal, steps):
    """Quiet, the guard reads the losses at the epoch's end (all 20 steps run); verbose
    on a terminal with refresh_seconds=0, at the progress bar's first read, after step 16
    of 20: a diverged run shown on screen stops there, not an epoch later. Verbose into a
    log (no bar is drawn there) it reads them at the epoch's end, as quiet."""
    import framework.trainer
    monkeypatch.setattr(framework.trainer, "_shows_a_bar", lambda bar_class: terminal)
    trainer = make_trainer(optimizer_param={"lr": 1e6}, epochs=1, verbose=verbose,
                           refresh_seconds=0, graph=False)  # eager: each step is a call
    ran = []
    step = trainer.train_step

    def counted(x, t):
        ran.append(1)
        return step(x, t)
    trainer.train_step = counted
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match=r"at step \d+ of 20"):
        trainer.train()
    assert len(ran) == steps
    assert trainer.train_loss_list == []  # the bad epoch is not recorded


def test_the_evaluation_subset_of_each_set_is_its_own(backend):
    """``evaluate_sample_num_per_epoch`` larger than a small training set: the training
    accuracy reads all of it, the test accuracy the first n of the test set (not as many
    as the training set has)."""
    x, t = blobs(n=40)
    xt, tt = blobs(n=100, seed=1)
    tt[40:60] = (tt[40:60] + 1) % 4  # mislabelled: read only where 60 test samples are
    seen = []

    def count(trainer, record):
        acc = trainer.network.accuracy
        seen.append(((record["train_acc"], record["test_acc"]),
                     (acc(trainer.batches.x, trainer.batches.t),
                      acc(trainer.x_test[:60, ...], trainer.t_test[:60, ...]))))
    Trainer(TwoLayerNet(20, 16, 4, seed=0, weight_init_std=0.1), x, t, xt, tt, epochs=2,
            mini_batch_size=10, optimizer="sgd", optimizer_param={"lr": 0.1},
            evaluate_sample_num_per_epoch=60, verbose=False, seed=0, callbacks=[count]).train()
    for recorded, wanted in seen:
        assert recorded == wanted
    assert seen[-1][0][1] < 0.75  # the mislabelled third was read


def test_the_step_a_loss_went_bad_at_is_named(backend):
    """The NaN guard names the step whose loss was not finite, counted over the run: the
    27th of 40 is the 7th of the second epoch."""
    trainer = make_trainer(epochs=2, graph=False)  # 20 steps an epoch
    calls = []
    step = trainer.train_step

    def bad_at_27(x, t):
        calls.append(1)
        loss = step(x, t)
        return loss * float("nan") if len(calls) == 27 else loss
    trainer.train_step = bad_at_27
    with pytest.raises(FloatingPointError, match=re.escape("the loss became nan at step 27 of "
                                                           "40 (epoch 2)")):
        trainer.train()


def test_bad_arguments():
    with pytest.raises(ValueError, match="sampling='random'"):
        make_trainer(sampling="random")
    for bad in (1, 0, 1.0, "True", None):  # 1 == True, but a 1 is no answer to "graph?"
        with pytest.raises(ValueError, match=rf"^Trainer: graph={re.escape(repr(bad))}; "
                                             rf"expected 'auto', True or False$"):
            make_trainer(graph=bad)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        make_trainer(resume=True)
    for name in ("drop_last", "resume", "sync_batchnorm", "check_replicas", "verbose"):
        # "no" is true: resume="no" resumed; a 0-d integer array of 2 is true too, and 1.0
        # is a number, not a flag
        for bad in ("no", None, 2, 1.0, np.array(2)):
            with pytest.raises(ValueError, match=rf"^Trainer: {name} must be True or False, "
                                                 rf"got {re.escape(repr(bad))}$"):
                make_trainer(**{name: bad})
    with pytest.raises(ValueError, match="Trainer: epochs must be a number above 0, got 0"):
        make_trainer(epochs=0)
    with pytest.raises(ValueError, match="Trainer: iters must be a number at least 1, got 0"):
        make_trainer(iters=0)
    # 400 samples in batches of 20: 20 steps an epoch, and 0.04 epochs is none; it said
    # "nothing to train (iters=None, epochs=0.04)", with no word of the steps an epoch has
    with pytest.raises(ValueError, match=r"^Trainer: nothing to train: epochs=0.04 of 20 "
                                         r"step\(s\) each \(400 samples in batches of 20\) is "
                                         r"0 steps; give more epochs, or iters$"):
        make_trainer(epochs=0.04)
    assert make_trainer(epochs=0.05).max_iter == 1
    with pytest.raises(ValueError, match="evaluate_sample_num_per_epoch must be a number at "
                                         "least 1, got 0"):
        make_trainer(evaluate_sample_num_per_epoch=0)
    for name in ("iters", "evaluate_sample_num_per_epoch"):  # 2.5 steps ran 2; a slice failed
        with pytest.raises(ValueError, match=rf"^Trainer: {name} must be a whole number, got "
                                             rf"2.5$"):
            make_trainer(**{name: 2.5})
    # NumPy's numbers are numbers: np.int64(3) was refused as "not a number at least 1"
    trainer = make_trainer(iters=np.int64(3), evaluate_sample_num_per_epoch=np.int64(5),
                           epochs=np.float32(2))
    assert trainer.max_iter == 3 and trainer.evaluate_sample_num_per_epoch == 5
    assert make_trainer(iters=3.0).max_iter == 3
    assert make_trainer(iters=3, epochs=0).max_iter == 3  # iters overrides epochs, unread
    for bad in (0, 2.5, "20", None):  # named DeviceBatches' batch_size, or int("a") failed
        with pytest.raises(ValueError, match=rf"^Trainer: mini_batch_size must be a whole "
                                             rf"number at least 1, got {re.escape(repr(bad))}$"):
            make_trainer(mini_batch_size=bad)
    assert make_trainer(mini_batch_size=np.int64(40)).batches.batch_size == 40
    with pytest.raises(ValueError, match="SGD: lr must be a finite number"):
        make_trainer(optimizer_param={"lr": -1})
    for bad in ("a", None, -1, float("inf")):  # 'a' was a TypeError at the bar's first refresh
        with pytest.raises(ValueError, match=rf"^Trainer: refresh_seconds must be a number of "
                                             rf"seconds, 0 or more, got {bad!r}$"):
            make_trainer(refresh_seconds=bad)


def test_test_data_is_checked_at_the_door_too(backend):
    x, t = blobs()
    xt, tt = blobs(n=100, seed=1)
    xt[42, 0] = np.nan
    with pytest.raises(ValueError, match="Trainer: x_test holds NaN or infinite values, first "
                                         "in row 42 of 100"):
        Trainer(TwoLayerNet(20, 16, 4), x, t, xt, tt)
    x[7] = np.inf  # the error names the cause, not the learning rate
    with pytest.raises(ValueError, match="^Trainer: x_train holds NaN .* row 7 of 400"):
        Trainer(TwoLayerNet(20, 16, 4), x, t, xt, tt)
    # the training set's errors name the Trainer's arguments, as the test set's do
    x, t = blobs()
    with pytest.raises(ValueError, match="^Trainer: x_train has 400 samples but t_train has 5$"):
        Trainer(TwoLayerNet(20, 16, 4), x, t[:5], xt, tt)
    with pytest.raises(ValueError, match=r"^Trainer: labels must lie in 0\.\.3, got 2\.\.5 "
                                         r"\(in t_train\)$"):
        Trainer(TwoLayerNet(20, 16, 4), x, np.clip(t, 0, 3) + 2, xt, tt)
    # test samples of another shape than the training ones: found at the first epoch's end
    x, t = blobs()
    with pytest.raises(ValueError, match=r"^Trainer: x_test's samples have shape \(19,\), "
                                         r"x_train's \(20,\); expected the same$"):
        Trainer(TwoLayerNet(20, 16, 4), x, t, blobs(n=100, seed=1)[0][:, :19], tt)
    trainer = Trainer(TwoLayerNet(20, 16, 4, seed=0), x, t, blobs(n=100, seed=1)[0],
                      np.eye(4, dtype=np.float32)[tt], epochs=1, verbose=False)
    trainer.train()  # labels as indices to train on, one-hot to test on: as before


def test_the_nan_guard_tells_divergence_from_overflow(backend):
    trainer = make_trainer(optimizer_param={"lr": 1e6}, epochs=1)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as info:
        trainer.train()
    assert "Cause: the parameters diverged (W1" in str(info.value)
    big = make_trainer(epochs=1)
    big.batches.x *= 1e30  # past the door check: an overflow in the forward pass
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as info:
        big.train()
    assert "the parameters are still finite, so the forward pass overflowed" in str(info.value) \
        or "diverged" in str(info.value)


def half_network(backend):
    try:
        return TwoLayerNet(20, 16, 4, seed=0, weight_init_std=0.1, dtype="float16")
    except ValueError as e:  # array-api-strict: the standard has no float16
        pytest.skip(f"{backend.name} has no float16: {e}")


def test_float16_with_an_optimizer_that_divides_by_squares_is_warned_and_explained(backend):
    """A float16 network with Adam (or AdaGrad, RMSprop) diverged within a few steps, and
    the run's end blamed the learning rate (or the inputs' scale): in float16 the squared
    gradients underflow and the book's 1e-7 divides them. The Trainer now says so when it
    is built, and the NaN guard gives that cause; SGD's divergence keeps its own cause."""
    from framework.gradient import LowPrecisionWarning
    with pytest.warns(LowPrecisionWarning, match=r"^Trainer: TwoLayerNet computes in float16, "
                      r"where this run is likely to diverge within a few steps: Adam divides "
                      r"each gradient by the root of squared gradients plus 1e-7"):
        trainer = make_trainer(net=half_network(backend), optimizer="adam",
                               optimizer_param={"lr": 1e3}, epochs=1)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as info:
        trainer.train()
    assert "Cause: the network computes in float16 (" in str(info.value)
    assert "train in float32 (the network's default dtype) and cast the trained parameters " \
           "to float16 for inference" in str(info.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowPrecisionWarning)  # none for SGD
        sgd = make_trainer(net=half_network(backend), optimizer_param={"lr": 1e4}, epochs=1)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as info:
        sgd.train()
    assert "Cause: the parameters" in str(info.value)  # diverged, or finite and overflowing
    assert str(info.value).endswith(" (in float16, whose largest number is 65504: float32, the "
                                    "network's default dtype, has room where float16 has none).")


@pytest.fixture(scope="module")
def fashion_mnist(tmp_path_factory):
    """Debian's Fashion-MNIST, parsed once for the module, its parsed cache in a temporary
    folder rather than the user's ~/.cache."""
    if not os.path.isdir(DEBIAN_FASHION):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return load_fashion_mnist(data_dir=DEBIAN_FASHION)


def test_fashion_mnist_two_epochs_reach_080(backend, fashion_mnist):
    (x, t), (xt, tt) = fashion_mnist
    net = TwoLayerNet(784, 50, 10, seed=0)
    trainer = Trainer(net, x, t, xt, tt, epochs=2, mini_batch_size=100, optimizer="sgd",
                      optimizer_param={"lr": 0.1}, verbose=False, seed=0)
    trainer.train()
    assert trainer.final_test_acc >= 0.80


def test_train_more_epochs(backend):
    trainer = make_trainer(epochs=1)
    trainer.train()
    trainer.train(epochs=2)
    assert trainer.history["epoch"] == [1, 2, 3] and trainer.iteration == 60
    assert trainer.epochs == 3 and len(trainer.train_loss_list) == 60
    trainer.train(epochs=0.5)  # a fraction, as the constructor's (was truncated to 0 epochs)
    assert trainer.iteration == 70 and trainer.epochs == 4 and trainer.history["epoch"][-1] == 4
    for bad in (0, -1, 0.01, "2", float("nan"), True):  # 0.01: less than one step
        with pytest.raises(ValueError, match=r"Trainer.train: epochs must be a number above 0 "
                                             r"that makes at least one step \(20 an epoch\), "
                                             r"got " + re.escape(repr(bad))):
            trainer.train(epochs=bad)
    assert trainer.iteration == 70  # nothing trained by a refusal


def interrupt_at(monkeypatch, step, signum=signal.SIGINT, twice=False):
    """Make this process receive ``signum`` right after step ``step`` (1-based) of the
    Trainer runs that follow, through the step object the Trainer chooses: the eager step
    and the CUDA-graph step (whose replay calls no ``train_step``) are stopped alike."""
    choose, count = steps.choose, [0]

    def choose_then_count(*args, **kwargs):
        chosen = choose(*args, **kwargs)
        run = chosen.run

        def run_then_signal(i):
            run(i)
            count[0] += 1
            if count[0] == step:
                os.kill(os.getpid(), signum)
                if twice:  # a second Ctrl-C, as impatient users press it
                    os.kill(os.getpid(), signal.SIGINT)
        chosen.run = run_then_signal
        return chosen
    monkeypatch.setattr(steps, "choose", choose_then_count)


@pytest.mark.parametrize("stop", [7, 20, 33, 59])
def test_an_interrupted_run_resumes_bit_for_bit(tmp_path, stop, sigint_heard, monkeypatch):
    """20 steps an epoch: 7 and 33 are mid-epoch, 20 right at an epoch's end, 59 one short."""
    path = str(tmp_path / "run.npz")

    def options(seed):
        return dict(net=deep_net(seed), optimizer=Momentum(lr=0.05), epochs=3, seed=5)
    full = make_trainer(**options(0))
    full.train()
    first = make_trainer(checkpoint=path, **options(0))
    interrupt_at(monkeypatch, stop, twice=(stop == 33))
    with pytest.raises(KeyboardInterrupt) as info:
        first.train()
    assert isinstance(info.value, TrainingInterrupted)
    assert info.value.step == stop and info.value.checkpoint == path
    assert info.value.signum == signal.SIGINT
    assert str(info.value) == (f"training interrupted by SIGINT after step {stop} of 60 (epoch "
                               f"{(stop - 1) // 20 + 1}); {path} holds the run as it stood")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers put back
    resumed = make_trainer(checkpoint=path, resume=True, **options(99))
    assert resumed.iteration + resumed._resume_position == stop
    resumed.train()
    assert resumed.train_loss_list == full.train_loss_list
    assert resumed.history["epoch"] == [1, 2, 3] and resumed.test_acc_list == full.test_acc_list
    assert resumed.batches.epoch == full.batches.epoch == 3  # epochs drawn, the resumed one once
    for key in full.network.params:
        np.testing.assert_array_equal(to_host(resumed.network.params[key]),
                                      to_host(full.network.params[key]), err_msg=key)
    for key, value in full.optimizer.state["v"].items():
        np.testing.assert_array_equal(to_host(resumed.optimizer.state["v"][key]), to_host(value))
    for key, value in full.network.state().items():
        np.testing.assert_array_equal(to_host(resumed.network.state()[key]), to_host(value))


def test_a_resumed_runs_bar_starts_where_the_run_stopped(tmp_path, monkeypatch, capsys,
                                                          sigint_heard):
    """Resumed 7 steps into its first epoch, a run's progress bar starts at 7 of 60, not
    at 0 (nor at the 20 of whole epochs a resume mid-epoch does not have)."""
    import framework.trainer
    path = str(tmp_path / "run.npz")
    first = make_trainer(checkpoint=path, epochs=3, seed=5)
    interrupt_at(monkeypatch, 7)
    with pytest.raises(TrainingInterrupted):
        first.train()
    monkeypatch.setattr(framework.trainer, "_shows_a_bar", lambda bar_class: True)
    capsys.readouterr()
    resumed = make_trainer(checkpoint=path, resume=True, epochs=3, seed=5, verbose=True)
    resumed.train()
    drawn = [part for part in re.split(r"[\r\n]", capsys.readouterr().err) if "train:" in part]
    assert re.search(r"\b7/60\b", drawn[0]), drawn[:2]
    assert re.search(r"\b60/60\b", drawn[-1]), drawn[-2:]


def test_a_stop_during_an_epochs_end_stops_before_the_next_epoch(tmp_path, sigint_heard):
    """Ctrl-C while an epoch ends (its evaluation, a callback) stops the run there: no step
    of the next epoch is taken, the checkpoint written at that end holds the run, and a
    resume from it ends with an uninterrupted run's bits."""
    path = str(tmp_path / "run.npz")
    full = make_trainer(epochs=3, seed=5)
    full.train()

    def ctrl_c_after_the_first(trainer, record):
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # noted by the run, not raised here
    first = make_trainer(checkpoint=path, callbacks=[ctrl_c_after_the_first], epochs=3, seed=5)
    with pytest.raises(TrainingInterrupted) as info:
        first.train()
    assert info.value.step == 20 and first.iteration == 20
    assert str(info.value) == (f"training interrupted by SIGINT after step 20 of 60 (epoch 1); "
                               f"{path} holds the run as it stood")
    resumed = make_trainer(checkpoint=path, resume=True, net_seed=9, epochs=3, seed=5)
    assert (resumed.iteration, resumed._resume_position) == (20, 0)
    resumed.train()
    assert resumed.train_loss_list == full.train_loss_list
    for key in full.network.params:
        np.testing.assert_array_equal(to_host(resumed.network.params[key]),
                                      to_host(full.network.params[key]), err_msg=key)


def test_a_stop_after_a_diverged_step_saves_nothing(tmp_path, monkeypatch, sigint_heard):
    """Ctrl-C mid-epoch after the losses went NaN (quiet: nothing read them yet) stops the
    run as a diverged one: the bad step named, no checkpoint written of the diverged run."""
    path = tmp_path / "run.npz"
    trainer = make_trainer(checkpoint=str(path), optimizer_param={"lr": 1e30}, epochs=2)
    interrupt_at(monkeypatch, 7)
    try:
        with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as info:
            trainer.train()
    except TrainingInterrupted as e:  # a KeyboardInterrupt: it would end the whole session
        pytest.fail(f"the diverged run was interrupted as a good one: {e}")
    assert re.search(r"at step \d of 40 \(epoch 1\)", str(info.value)), str(info.value)
    assert f"; no checkpoint had been written yet ({path} is written at each epoch's end)" \
        in str(info.value)
    assert not path.exists()


def test_a_signal_the_process_ignores_stays_ignored(monkeypatch):
    """As Python leaves SIGINT ignored in a shell's background job, the Trainer does: it
    neither stops on it nor changes the handler."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trainer = make_trainer(epochs=2)
        interrupt_at(monkeypatch, 5, signal.SIGINT)
        trainer.train()
        assert trainer.iteration == 40
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_without_a_checkpoint_says_nothing_was_saved(monkeypatch):
    trainer = make_trainer(epochs=2)
    interrupt_at(monkeypatch, 5, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="interrupted by SIGTERM after step 5 of 40 "
                                                  r"\(epoch 1\); nothing was saved"):
        trainer.train()


def test_a_failed_checkpoint_write_names_the_path_and_keeps_the_last_one(tmp_path):
    target = tmp_path / "run.npz"
    saved = {}

    def break_the_path(trainer, record):  # after epoch 1's write, a folder where the file goes
        saved["digest"] = hashlib.md5(target.read_bytes()).hexdigest()
        (tmp_path / "a-folder").mkdir()
        trainer.checkpoint = str(tmp_path / "a-folder")
    trainer = make_trainer(checkpoint=str(target), callbacks=[break_the_path], epochs=3)
    from framework.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match=r"could not write the checkpoint .*a-folder: "
                                              r"Is a directory.*; the previous checkpoint was "
                                              r"left as it was$"):
        trainer.train()
    assert hashlib.md5(target.read_bytes()).hexdigest() == saved["digest"]
    assert sorted(os.listdir(tmp_path)) == ["a-folder", "run.npz"]  # no temporary left


def test_a_checkpoint_that_could_not_be_written_is_refused_before_training(tmp_path):
    """A folder in the file's place, or a folder that cannot be made: said at once, not
    after an epoch's training (the nested folders a path names are made)."""
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("")
    for path, message in ((tmp_path / "a-folder", "is a folder; expected a file's name"),
                          (tmp_path / "a-file" / "run.npz", "cannot be made")):
        with pytest.raises(ValueError, match=re.escape(f"Trainer: checkpoint={str(path)!r}") +
                           ".*" + re.escape(message)):
            make_trainer(checkpoint=str(path))
    nested = tmp_path / "runs" / "today" / "run.npz"
    make_trainer(checkpoint=str(nested), epochs=1).train()
    assert nested.is_file()
    for wrong in (123, ["run.npz"]):  # was os.fspath's "expected str, bytes or os.PathLike"
        with pytest.raises(ValueError, match=re.escape(
                f"Trainer: checkpoint must be a file's path (a str or os.PathLike), got "
                f"{wrong!r}")):
            make_trainer(checkpoint=wrong)
    make_trainer(checkpoint=tmp_path / "as-a-path.npz", epochs=1).train()  # a pathlib.Path
    assert (tmp_path / "as-a-path.npz").is_file()


def test_a_new_run_replaces_a_checkpoint_but_never_a_file_that_is_not_one(tmp_path):
    """A checkpoint from before is a new run's to replace (a second run of the same
    script); anything else there (``checkpoint="data.npz"``, a typo) was overwritten at
    the first epoch's end: refused at once, the file as it was."""
    path = tmp_path / "run.npz"
    make_trainer(checkpoint=str(path), epochs=1).train()
    first = path.read_bytes()
    make_trainer(checkpoint=str(path), epochs=1, seed=3).train()
    assert path.read_bytes() != first  # the new run's
    other = tmp_path / "data.npz"
    np.savez(other, x=np.arange(3))
    before = other.read_bytes()
    with pytest.raises(ValueError, match=re.escape(
            f"Trainer: checkpoint={other}: no readable header (KeyError: 'meta'); a new run "
            f"would replace it: name another file, or move this one away")):
        make_trainer(checkpoint=str(other), epochs=1)
    with pytest.raises(Exception, match="no readable header"):  # nor resumed from
        make_trainer(checkpoint=str(other), epochs=1, resume=True)
    assert other.read_bytes() == before
    link = tmp_path / "moved.npz"  # a link whose checkpoint has gone: the rename would
    link.symlink_to(tmp_path / "gone.npz")  # replace the link itself with a file
    with pytest.raises(ValueError, match=re.escape(
            f"Trainer: checkpoint={link}: a symbolic link to {tmp_path / 'gone.npz'}, where "
            f"there is no file; a new run would replace it")):
        make_trainer(checkpoint=str(link), epochs=1)
    assert link.is_symlink() and not link.exists()


def test_callbacks_are_checked_at_once_and_one_alone_is_a_list_of_one():
    seen = []
    make_trainer(epochs=2, callbacks=lambda trainer, record: seen.append(record["epoch"])).train()
    assert seen == [1, 2]
    with pytest.raises(ValueError, match="callbacks must be functions f\\(trainer, record\\); "
                                         "'not a function' cannot be called"):
        make_trainer(callbacks=[print, "not a function"])
    with pytest.raises(ValueError, match="callbacks must be a list of functions"):
        make_trainer(callbacks=3)
    # a function of the trainer alone ran a whole epoch, then failed on its second argument
    with pytest.raises(ValueError, match=r"^Trainer: callbacks are called as f\(trainer, "
                                         r"record\); test_callbacks_are_checked_at_once_and_one"
                                         r"_alone_is_a_list_of_one.<locals>.<lambda>\(trainer\) "
                                         r"cannot take them: too many positional arguments$"):
        make_trainer(callbacks=[lambda trainer: None])
    make_trainer(callbacks=[lambda *args: None, lambda t, r, extra=1: None, print])


DISK_FULL = r"""
import hashlib, os, resource, signal, sys
sys.path.insert(0, sys.argv[1])
from tests.framework.test_trainer import make_trainer
from framework.checkpoint import CheckpointError
path = sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails with EFBIG

def fill_the_disk(trainer, record):
    size = os.path.getsize(path)
    print("digest", hashlib.md5(open(path, "rb").read()).hexdigest(), flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))
try:
    make_trainer(checkpoint=path, callbacks=[fill_the_disk], epochs=3).train()
except CheckpointError as e:
    print("error", e)
"""


def test_disk_full_for_real_leaves_the_last_checkpoint_and_no_temporary(tmp_path):
    import subprocess
    import sys
    from tests.conftest import ROOT
    path = tmp_path / "run.npz"
    r = subprocess.run([sys.executable, "-c", DISK_FULL, ROOT, str(path)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    digest = re.search(r"^digest (\w+)$", r.stdout, re.M).group(1)
    assert re.search(r"^error Trainer: could not write the checkpoint .*run.npz: File too large",
                     r.stdout, re.M), r.stdout
    assert hashlib.md5(path.read_bytes()).hexdigest() == digest  # the last good one, intact
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]  # no temporary file left behind


def test_a_run_on_the_host_takes_large_blocks_from_the_heap_and_gives_mmap_back(backend):
    from backends.host import allocator
    from backends.registry import REGISTRY
    held = REGISTRY.allocator  # the process's, which backends.large_blocks_from_heap sets
    trainer = make_trainer(epochs=2)
    seen = []
    run_epoch = trainer._train_epoch

    def epoch(bar):
        seen.append(held._heap_on)
        run_epoch(bar)
    trainer._train_epoch = epoch
    trainer.train()
    # host memory: NumPy's and array-api-strict's arrays (NumPy's underneath), and PyTorch's
    # and JAX's on the CPU (XLA's buffers: malloc's too)
    on_host = {"numpy": True, "array_api_strict": True, "cupy": False,
               "torch": getattr(backend.device, "type", None) == "cpu",
               "jax": getattr(backend.device, "platform", None) == "cpu"}[backend.name]
    assert seen == [on_host and allocator._mallopt() is not None] * 2
    assert not held._heap_on and held._heap_depth == 0


def test_train_on_a_complete_run_says_so(backend):
    """The book's train() trains again when called again; ours runs the remaining steps,
    and on a complete run there are none: it returned without a word. It says so, and how
    to train more (train(epochs=n), which does)."""
    trainer = make_trainer(epochs=1)
    trainer.train()
    with pytest.warns(UserWarning, match=r"^Trainer\.train: the run is complete \(20 of 20 "
                                         r"steps, 1 epochs\): nothing to train; "
                                         r"train\(epochs=n\) trains n epochs more$"):
        trainer.train()
    assert trainer.iteration == 20 and trainer.final_test_acc is not None
    trainer.train(epochs=1)
    assert trainer.iteration == 40


def test_a_batch_norm_networks_numerical_gradient_says_what_its_gradient_says(backend):
    """numerical_gradient walks the layers' stack forms, past forward's checks: an empty
    batch gave NumPy's warnings, and is refused as gradient refuses it. A batch of one,
    its own mean, is computed by both with the same warning: the book's
    ch06/batch_norm_gradient_check.py compares the two on ``x_train[:1]`` (it was a
    ValueError, where the book prints the differences)."""
    from framework.layers.batch_norm import BatchOfOneWarning
    from models import MultiLayerNetExtend
    x, t = blobs(n=3)
    net = MultiLayerNetExtend(20, [8], 4, use_batchnorm=True, seed=0, dtype="float64")
    for call in (net.gradient, net.numerical_gradient):
        with pytest.raises(ValueError, match=r"^BatchNorm1: an empty training batch"):
            call(backend.asarray(x[:0], "float64"), backend.asarray(t[:0]))
    one = backend.asarray(x[:1], "float64"), backend.asarray(t[:1])
    with pytest.warns(BatchOfOneWarning, match=r"^BatchNorm1: a training batch of one sample"):
        backprop = net.gradient(*one)
    with pytest.warns(BatchOfOneWarning, match=r"^BatchNorm1: a training batch of one sample"):
        numerical = net.numerical_gradient(*one)
    for key in ("W1", "b1", "gamma1", "W2"):  # beta1 (0: ReLU gives 0) is all they see
        assert not np.any(to_host(backprop[key])) and not np.any(to_host(numerical[key])), key
    assert np.any(to_host(backprop["b2"]))
    np.testing.assert_allclose(to_host(numerical["b2"]), to_host(backprop["b2"]), atol=1e-8)


def test_the_books_trainer_names_answer(backend):
    """A reader's code written against the book's common/trainer.py reads
    ``current_iter``, ``batch_size``, ``train_size``, ``x_train`` and ``t_train`` (each was
    an AttributeError), and the book's ``train_step()`` without a batch says what runs the
    steps here (it was "missing 2 required positional arguments")."""
    trainer = make_trainer(epochs=2, mini_batch_size=40)
    assert (trainer.current_iter, trainer.batch_size, trainer.train_size) == (0, 40, 400)
    x, t = blobs()
    np.testing.assert_array_equal(to_host(trainer.x_train), x)
    np.testing.assert_array_equal(to_host(trainer.t_train), t)
    with pytest.raises(TypeError, match=r"the book's train_step\(\) drew its own .* call "
                                        r"trainer.train\(\)"):
        trainer.train_step()
    trainer.train()
    assert trainer.current_iter == trainer.max_iter == 20


def test_an_optimizer_reused_for_a_new_network_is_refused_and_one_for_the_same_goes_on(
        backend, tmp_path):
    """A loop of trials that makes one ``Adam`` and a new network each trial: the second
    trial started from the first's moments (same names, same shapes) without a word. The
    same network trained on with its optimizer goes on, and a resumed run's optimizer is
    the checkpoint's."""
    from framework.optimizers import SGD, Adam
    adam = Adam(lr=0.01)
    first = make_trainer(optimizer=adam, epochs=1)
    first.train()
    make_trainer(optimizer=adam, net=first.network, epochs=1).train()  # the same network
    with pytest.raises(ValueError, match=r"^Trainer: this Adam holds m, v from updates of "
                                         r"another network's parameters .*give each network "
                                         r"a new Adam\(\.\.\.\)"):
        make_trainer(optimizer=adam, net_seed=1)
    sgd = SGD(lr=0.1)  # no state: nothing to carry over
    make_trainer(optimizer=sgd, epochs=1).train()
    make_trainer(optimizer=sgd, net_seed=1, epochs=1).train()
    path = str(tmp_path / "run.npz")
    make_trainer(optimizer=Adam(lr=0.01), checkpoint=path, epochs=1).train()
    resumed = make_trainer(optimizer=adam, net_seed=1, checkpoint=path, resume=True, epochs=2)
    resumed.train()  # its moments came from the checkpoint, for this network
    assert resumed.iteration == 40


def test_a_network_without_what_the_run_calls_is_refused_before_it_trains():
    """A network of the user's own without ``accuracy`` trained a whole epoch, then ended in
    "'Mini' object has no attribute 'accuracy'" at the epoch's end."""
    full = TwoLayerNet(20, 16, 4, seed=0)

    class Mini:
        params = full.params

        def gradient(self, x, t):
            return full.gradient(x, t)

    with pytest.raises(TypeError, match=r"^Trainer: Mini has no accuracy\(x, t\), which the "
                                        r"Trainer calls at every epoch's end"):
        make_trainer(net=Mini())
    Mini.accuracy, Mini.gradient = full.accuracy, None
    with pytest.raises(TypeError, match=r"^Trainer: Mini has no gradient\(x, t\), which the "
                                        r"Trainer calls at every step"):
        make_trainer(net=Mini())
    Mini.params = {}
    with pytest.raises(TypeError, match=r"^Trainer: Mini has no params"):
        make_trainer(net=Mini())
