"""framework/data.py: device-resident minibatches."""

import numpy as np
import pytest

import backends
from framework.data import DeviceBatches
from tests.conftest import to_host


def dataset(n=23):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    t = (np.arange(n) % 10).astype(np.uint8)
    return x, t


def rows_seen(batches):
    return np.concatenate([to_host(xb)[:, 0] // 3 for xb, _ in batches]).astype(int)


def test_shuffle_gives_every_sample_once_per_epoch(backend):
    x, t = dataset()
    batches = DeviceBatches(x, t, 5, seed=0)
    assert len(batches) == 5  # 23 samples: four of 5 and one of 3
    first, second = rows_seen(batches), rows_seen(batches)
    assert sorted(first) == list(range(23)) and sorted(second) == list(range(23))
    assert first.tolist() != second.tolist()  # a fresh permutation each epoch
    assert batches.epoch == 2


def test_labels_travel_with_their_images(backend):
    x, t = dataset()
    for xb, tb in DeviceBatches(x, t, 4, seed=1):
        rows = to_host(xb)[:, 0].astype(int) // 3
        np.testing.assert_array_equal(to_host(tb), t[rows])


def test_same_seed_same_order_on_every_backend(backend):
    x, t = dataset()
    here = [rows_seen(DeviceBatches(x, t, 5, seed=9)) for _ in range(2)]
    cpu = rows_seen(DeviceBatches(x, t, 5, seed=9, backend=backends.use("numpy")))
    np.testing.assert_array_equal(here[0], here[1])
    np.testing.assert_array_equal(here[0], cpu)
    assert rows_seen(DeviceBatches(x, t, 5, seed=10)).tolist() != here[0].tolist()


def test_replacement_matches_choice_sampling(backend):
    x, t = dataset(100)
    batches = DeviceBatches(x, t, 10, shuffle=False, replacement=True, seed=3)
    rows = rows_seen(batches)
    assert len(rows) == 100 and len(batches) == 10
    assert len(set(rows.tolist())) < 100  # with replacement, some repeat
    expected = np.random.default_rng(3).integers(0, 100, size=100)
    np.testing.assert_array_equal(rows, expected)
    # 23 samples in batches of 5: ceil(23 / 5) draws of a full batch each, as the book's
    # np.random.choice(train_size, batch_size) in a loop; no short last batch
    batches = DeviceBatches(*dataset(23), 5, shuffle=False, replacement=True, seed=4)
    assert [int(xb.shape[0]) for xb, _ in batches] == [5] * 5 and batches.full_batches == 5
    np.testing.assert_array_equal(rows_seen(batches),
                                  np.random.default_rng(4).integers(0, 23, size=50)[25:])


def test_in_order_and_drop_last(backend):
    x, t = dataset()
    assert rows_seen(DeviceBatches(x, t, 5, shuffle=False)).tolist() == list(range(23))
    dropped = DeviceBatches(x, t, 5, seed=0, drop_last=True)
    assert len(dropped) == 4 and len(rows_seen(dropped)) == 20 and dropped.full_batches == 4
    few = DeviceBatches(x[:3], t[:3], 5, seed=0, drop_last=True)  # fewer than one batch
    assert len(few) == 1 and sorted(rows_seen(few)) == [0, 1, 2] and few.full_batches == 0
    assert DeviceBatches(x, t, 5, seed=0).full_batches == 4  # all but the short last one


def test_batches_stay_on_the_backend(backend):
    x, t = dataset()
    batches = DeviceBatches(x, t, 5, seed=0)
    assert backends.backend_of(batches.x) == backend
    for xb, tb in batches:
        assert backends.backend_of(xb) == backends.backend_of(tb) == backend
        assert backends.dtype_name(xb.dtype) == "float32"


def test_dtype_cast_on_send(backend):
    x, t = dataset()
    batches = DeviceBatches(x, t, 5, dtype="float64")
    assert backends.dtype_name(batches.x.dtype) == "float64"


def test_bad_arguments_are_named():
    x, t = dataset()
    with pytest.raises(ValueError, match="x has 23 samples but t has 22"):
        DeviceBatches(x, t[:-1], 5)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        DeviceBatches(x, t, 0)
    with pytest.raises(ValueError, match="labels must lie in 0..4, got 0..9"):
        DeviceBatches(x, t, 5, num_classes=5)
    with pytest.raises(ValueError, match=r"labels must lie in 0..9, got -1..8 \(in t\)"):
        DeviceBatches(x, t.astype(np.int64) - 1, 5, num_classes=10)  # a 1-based file, shifted
    with pytest.raises(ValueError, match=r"batch_size must be at least 1 \(an integer\), got "
                                         r"True"):
        DeviceBatches(x, t, True)
    with pytest.raises(ValueError, match="choose shuffle or replacement, not both"):
        DeviceBatches(x, t, 5, shuffle=True, replacement=True)
    # a string was true: "no" shuffled the data meant in order, or dropped its last batch
    for name in ("shuffle", "replacement", "drop_last"):
        with pytest.raises(ValueError, match=rf"^DeviceBatches: {name} must be True or False, "
                                             rf"got 'no'$"):
            DeviceBatches(x, t, 5, **{name: "no"})
    in_order = DeviceBatches(x, t, 5, shuffle=np.False_, drop_last=0)  # NumPy's, and 0 and 1
    assert [int(v) for _, tb in in_order for v in tb] == [int(v) for v in t]
    with pytest.raises(ValueError, match=r"t has shape \(23, 10\) and dtype float64; expected "
                                         r"one-hot rows of 5 numbers"):
        DeviceBatches(x, np.eye(10)[t], 5, num_classes=5)
    # a column of float labels is no column of labels (those are integers): named as rows
    # of the wrong width, not as 1-D labels of the wrong type the user never gave
    with pytest.raises(ValueError, match=r"t has shape \(23, 1\) and dtype float32; expected "
                                         r"one-hot rows of 10 numbers, or integer labels"):
        DeviceBatches(x, t[:, None].astype(np.float32), 5, num_classes=10)
    # an integer type truncated the features; a misspelt one was NumPy's TypeError
    for dtype, said in (("int32", "int32"), ("float33", "'float33'"), ("bool", "bool")):
        with pytest.raises(ValueError, match=rf"^DeviceBatches: dtype must be a floating type, "
                                             rf"got {said}$"):
            DeviceBatches(x, t, 5, dtype=dtype)


@pytest.mark.parametrize("damage, message", [
    (lambda x, t: (x[:0], t[:0]), r"x is empty \(0 samples\)"),
    (lambda x, t: (x, t.astype(np.float32)), "1-D labels must be integer class indices"),
    (lambda x, t: (x, t[:, None, None]), r"t has shape \(23, 1, 1\)"),
    (lambda x, t: (x.astype(str), t), "x has dtype <U"),
    (lambda x, t: (x.astype(object), t), r"x has dtype object; expected numbers \(float, "
                                         r"integer or bool\)"),  # bools: binarised images
    (lambda x, t: (x.astype(np.complex64), t), r"x has dtype complex64; expected numbers"),
    # it said "x and t must be arrays ..., got shapes None and (23,)" for a list
    (lambda x, t: (x.tolist(), t), r"x must be an array with a sample axis \(a NumPy array or "
                                   r"one of the backend's\), got a list$"),
    (lambda x, t: (x, t[0]), r"t must be an array with a sample axis .*got an array of shape "
                             r"\(\)$"),
])
def test_data_is_checked_at_the_door(damage, message):
    x, t = dataset()
    with pytest.raises(ValueError, match="DeviceBatches: .*" + message):
        DeviceBatches(*damage(x, t), 5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_bad_value_in_the_last_row_or_a_single_sample_is_found(xp, bad):
    """The row search covers every row, the last one included, and a one-sample set."""
    x, t = dataset()
    x = x.astype(np.float32)
    x[-1, 0] = bad
    with pytest.raises(ValueError, match=r"x holds NaN or infinite values, first in row 22 of 23"):
        DeviceBatches(backends.to_device(x), backends.to_device(t), 5)
    with pytest.raises(ValueError, match=r"x holds NaN or infinite values, first in row 0 of 1"):
        DeviceBatches(backends.to_device(x[-1:]), backends.to_device(t[-1:]), 5)
    one_hot = np.eye(10, dtype=np.float32)[t]
    one_hot[-1, -1] = bad
    with pytest.raises(ValueError, match=r"t holds NaN or infinite values, first in row 22 of 23"):
        DeviceBatches(np.nan_to_num(x), one_hot, 5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_named_by_row(xp, bad):
    x, t = dataset()
    x = x.astype(np.float32)
    x[17, -1] = bad
    with pytest.raises(ValueError, match=r"DeviceBatches: x holds NaN or infinite values, first "
                                         r"in row 17 of 23"):
        DeviceBatches(backends.to_device(x), backends.to_device(t), 5)
    one_hot = np.eye(10, dtype=np.float32)[t]
    one_hot[4, 0] = bad
    with pytest.raises(ValueError, match="t holds NaN or infinite values, first in row 4"):
        DeviceBatches(np.nan_to_num(x), one_hot, 5)


def test_one_hot_rows_are_placed_in_the_datas_dtype(backend):
    """The Trainer's one-hot labels (np.eye(10)[t], float64) went to the device as they
    were, for a float32 network: every step cast them (or, before, mixed dtypes)."""
    x, t = dataset()
    one_hot = np.eye(10)[t]
    batches = DeviceBatches(x, one_hot, 5, dtype="float32", backend=backend)
    assert backends.dtype_name(batches.t.dtype) == "float32"
    np.testing.assert_array_equal(backends.to_numpy(batches.t), one_hot.astype(np.float32))
    labels = DeviceBatches(x, t, 5, dtype="float32", backend=backend)
    assert backends.dtype_name(labels.t.dtype) == backends.dtype_name(backend.asarray(t).dtype)


def test_a_column_of_labels_is_taken_as_the_labels_and_one_feature_a_sample_is_named(backend):
    """Labels as a table's column, (N, 1) integers (pandas' and scikit-learn's, and the
    book's own ch07/gradient_check.py's ``T = np.array([1]).reshape((1,1))``), are the
    labels, as the book's loss takes them: they were refused ("t has shape (1, 1); expected
    one-hot (1, 10) or integer labels (1,)"), so the book's script failed. The loss, the
    gradients (backprop and numerical), the accuracy and the Trainer answer as for (N,)
    (the book's accuracy took the column's argmax: 0 for every sample). A 1-D x, one
    number a sample, passed the Trainer and failed at the first step as "use x[None] for
    a single sample", the opposite fix: it is named."""
    from framework.trainer import Trainer
    from models import TwoLayerNet
    rng = np.random.default_rng(8)
    x, t = rng.random((12, 4)), rng.integers(0, 3, 12)
    net = TwoLayerNet(4, 5, 3, seed=0, dtype="float64")
    xs, labels, column = backend.asarray(x), backend.asarray(t), backend.asarray(t[:, None])
    assert float(net.loss(xs, column)) == float(net.loss(xs, labels))
    assert net.accuracy(xs, column) == net.accuracy(xs, labels)
    for key, g in net.gradient(xs, column).items():
        np.testing.assert_array_equal(to_host(g), to_host(net.gradient(xs, labels)[key]), key)
    for key, g in net.numerical_gradient(xs, column).items():
        np.testing.assert_allclose(to_host(g), to_host(net.numerical_gradient(xs, labels)[key]),
                                   rtol=1e-12, err_msg=key)
    runs = []
    for train, test in ((t, t), (t[:, None], t[:, None])):
        trainer = Trainer(TwoLayerNet(4, 5, 3, seed=0), x.astype(np.float32), train,
                          x.astype(np.float32), test, epochs=2, mini_batch_size=4, seed=0,
                          verbose=False)
        trainer.train()
        runs.append((trainer.train_loss_list, trainer.test_acc_list))
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match=r"^Trainer: labels must lie in 0\.\.2, got 0\.\.3"):
        Trainer(net, x, (t + (t == 2))[:, None], x, t, epochs=1, verbose=False)
    # a network of one class: (N, 1) integers are its one-hot rows, not labels
    single = TwoLayerNet(4, 5, 1, seed=0, dtype="float64")
    assert float(single.loss(xs, backend.asarray(np.ones((12, 1), dtype=np.int64)))) == 0.0
    with pytest.raises(ValueError, match=r"^Trainer: x_train has shape \(12,\): one number a "
                                         r"sample; .* \(x_train\[:, None\] makes a column"):
        Trainer(TwoLayerNet(1, 5, 3, seed=0), x[:, 0], t, x[:, :1], t, epochs=1, verbose=False)


def test_images_and_labels_from_two_libraries_are_each_checked_in_their_own():
    """NumPy images with labels of another library (or the other way round) ended in that
    library's words about the other's array (PyTorch: "amin(): argument 'input' must be
    Tensor, not numpy.ndarray"): the check took one namespace for both. Each is checked in
    its own; both are sent to the network's backend, and a bad value is still named."""
    import array_api_strict as strict
    from framework.trainer import Trainer
    from models import TwoLayerNet
    rng = np.random.default_rng(9)
    x, t = rng.random((12, 4)).astype(np.float32), rng.integers(0, 3, 12)
    for xs, ts in ((x, strict.asarray(t)), (strict.asarray(x), t)):
        trainer = Trainer(TwoLayerNet(4, 5, 3, seed=0), xs, ts, x, t, epochs=1,
                          mini_batch_size=4, verbose=False)
        trainer.train()
        assert len(trainer.train_loss_list) == 3
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"^Trainer: x_train holds NaN or infinite values, "
                                         r"first in row 5 of 12"):
        Trainer(TwoLayerNet(4, 5, 3, seed=0), strict.asarray(bad), t, x, t, verbose=False)
    with pytest.raises(ValueError, match=r"^Trainer: labels must lie in 0\.\.2, got 0\.\.3"):
        Trainer(TwoLayerNet(4, 5, 3, seed=0), x, strict.asarray(t + (t == 2)), x, t,
                verbose=False)


def test_labels_of_a_wide_unsigned_type_train_as_any_others(backend):
    """uint16, uint32 or uint64 labels (as some files store them): PyTorch gathers none of
    those types, and the Trainer's first batch ended in "index_select not implemented for
    'UInt16'". They are sent as int32, the same numbers, and the run is the one int64
    labels give. The same labels as PyTorch's own tensors failed before that, in the check
    of their range ("min_all" not implemented for 'UInt16')."""
    from framework.trainer import Trainer
    from models import TwoLayerNet
    rng = np.random.default_rng(13)
    x, t = rng.random((12, 4)).astype(np.float32), rng.integers(0, 3, 12)
    losses = []
    for dtype in ("int64", "uint8", "uint16", "uint32", "uint64"):
        for labels in (t.astype(dtype), backend.asarray(t.astype(dtype))):
            trainer = Trainer(TwoLayerNet(4, 5, 3, seed=0), x, labels, x, labels, epochs=1,
                              mini_batch_size=4, verbose=False, seed=0)
            trainer.train()
            losses.append(trainer.train_loss_list)
            if dtype in ("uint16", "uint32", "uint64"):
                assert backends.dtype_name(trainer.batches.t.dtype) == "int32"
    assert all(run == losses[0] for run in losses)


def test_wide_unsigned_labels_past_int16s_range_are_sent_as_int32():
    """Labels past int16's range (a set of 40,000 classes in uint16 or uint32) go as int32
    too; only uint64 labels past int32's range stay as they are (for check_data to judge)."""
    from framework.data import _gatherable
    for dtype in ("uint16", "uint32", "uint64"):
        sent = _gatherable(np.array([0, 40000, 7], dtype=dtype))
        assert sent.dtype == np.int32 and sent.tolist() == [0, 40000, 7]
    huge = np.array([0, 2**31], dtype=np.uint64)
    assert _gatherable(huge) is huge


def test_binarised_images_and_one_hot_rows_of_bools_train_as_their_zeros_and_ones(backend):
    """Images thresholded to bools (``x > 0.5``, binarised MNIST) and one-hot rows of bools
    (``np.eye(10, dtype=bool)[t]``): a network computed on both, but the Trainer refused
    them ("x_train has dtype bool; expected numbers (float or integer)"), and ``accuracy``
    and ``cross_entropy_error`` failed on PyTorch and array-api-strict, which take no
    argmax of bools ("argmax(): does not support bool input"). They are 0 and 1."""
    from framework.functions import cross_entropy_error, softmax
    from framework.trainer import Trainer
    from models import TwoLayerNet
    rng = np.random.default_rng(14)
    x, t = rng.random((12, 4)) > 0.5, rng.integers(0, 3, 12)
    rows = np.eye(3, dtype=bool)[t]
    runs = [Trainer(TwoLayerNet(4, 5, 3, seed=0), images, labels, images, labels, epochs=2,
                    mini_batch_size=4, verbose=False, seed=0)
            for images, labels in ((x.astype(np.float32), t), (x, t), (x, rows),
                                   (backend.asarray(x), backend.asarray(rows)))]
    for run in runs:
        run.train()
    for run in runs[1:]:
        np.testing.assert_allclose(run.train_loss_list, runs[0].train_loss_list, rtol=1e-6)
        assert run.test_acc_list == runs[0].test_acc_list
    net, images = runs[0].network, backend.asarray(x.astype(np.float32))
    assert net.accuracy(images, backend.asarray(rows)) == net.accuracy(images, backend.asarray(t))
    y = softmax(net.predict(images))
    assert float(cross_entropy_error(y, backend.asarray(rows))) == pytest.approx(
        float(cross_entropy_error(y, backend.asarray(t))), rel=1e-6)


def test_short_batch_is_the_last_batch_the_epochs_draw():
    """What the Trainer asks before a batch-norm run: the samples of an epoch's short last
    batch, 0 where there is none to draw."""
    x, t = np.zeros((51, 2), np.float32), np.zeros(51, np.int64)
    cases = [(dict(), 1), (dict(drop_last=True), 0), (dict(shuffle=False, replacement=True), 0)]
    for kwargs, short in cases:
        assert DeviceBatches(x, t, 10, backend=backends.backend_class("numpy")("cpu"),
                             **kwargs).short_batch == short
    assert DeviceBatches(x[:50], t[:50], 10).short_batch == 0
    assert DeviceBatches(x[:7], t[:7], 10, drop_last=True).short_batch == 7  # all of a small set


def test_drop_last_is_described_only_where_it_leaves_a_batch_out():
    """A checkpoint's description of the batches says drop_last only where it changes
    them: on 50 samples in batches of 10 it leaves nothing out, so a run resumed without
    it draws the same batches and is let go on."""
    x, t = np.zeros((51, 2), np.float32), np.zeros(51, np.int64)
    for n, dropped in ((51, True), (50, False), (7, False)):  # (7: one batch of all of it)
        described = DeviceBatches(x[:n], t[:n], 10, drop_last=True).describe()
        assert described == {"train_size": n, "mini_batch_size": 10, "sampling": "epoch",
                             "drop_last": dropped}
    assert DeviceBatches(x, t, 10, drop_last=True, shuffle=False,
                         replacement=True).describe()["drop_last"] is False
