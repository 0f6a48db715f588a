"""framework/history.py: a run's history, as the Trainer returns it and a checkpoint keeps it."""

from framework.history import History


def test_epochs_fill_the_records_and_the_books_lists_and_survive_a_checkpoint():
    history = History()
    history.add_epoch([2.0, 1.5], {"epoch": 1, "iteration": 2, "loss": 1.75, "train_acc": 0.5,
                                   "test_acc": 0.4, "seconds": 0.1})
    assert history["loss"] == [1.75] and history.train_loss_list == [2.0, 1.5]
    assert (history.train_acc_list, history.test_acc_list) == ([0.5], [0.4])
    meta, arrays = history.state()
    again = History()
    again.load_state(meta, arrays)
    assert dict(again) == dict(history) and again.train_loss_list == [2.0, 1.5]
    assert (again.train_acc_list, again.test_acc_list) == ([0.5], [0.4])
    assert list(again) == list(History.KEYS)
    # Python floats, as the docstring promises and a fresh run's are (not NumPy scalars,
    # whose repr and arithmetic a user's plotting or logging then meets)
    assert all(type(v) is float for v in again.train_loss_list)


def test_loading_replaces_what_was_there():
    """A History that had epochs takes a checkpoint's records whole, keys it lacks included:
    nothing of its own is left beside them."""
    history = History()
    history.add_epoch([1.0], {"epoch": 1, "iteration": 1, "loss": 1.0, "train_acc": 0.1,
                              "test_acc": 0.1, "seconds": 0.1})
    history["extra"] = [1]
    meta, arrays = History().state()
    history.load_state(meta, arrays)
    assert dict(history) == {key: [] for key in History.KEYS}
    assert history.train_loss_list == [] and history.test_acc_list == []
