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
    assert again.test_acc_list == [0.4] and list(again) == list(History.KEYS)
