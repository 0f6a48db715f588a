"""A run's history: one record per epoch, and the book's lists."""

import backends


class History(dict):
    """What a run has measured. As a dict, one list per key of :data:`KEYS`, an entry an
    epoch: ``epoch``, ``iteration``, ``loss`` (the epoch's mean), ``train_acc``,
    ``test_acc``, ``seconds`` (what ``Trainer.train`` returns). Beside it the book's lists:
    ``train_loss_list`` (a loss a step), ``train_acc_list`` and ``test_acc_list`` (an
    accuracy an epoch), all Python floats.

    :meth:`state` and :meth:`load_state` carry it in a checkpoint (the per-step losses as
    an array, the rest in the header)."""

    KEYS = ("epoch", "iteration", "loss", "train_acc", "test_acc", "seconds")

    def __init__(self):
        super().__init__((key, []) for key in self.KEYS)
        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []

    def add_epoch(self, losses, record):
        """An epoch's per-step ``losses`` and its ``record`` (a dict of :data:`KEYS`)."""
        self.train_loss_list.extend(losses)
        for key in self.KEYS:
            self[key].append(record[key])
        self.train_acc_list.append(record["train_acc"])
        self.test_acc_list.append(record["test_acc"])

    def state(self):
        """``(meta, arrays)``: its part of a checkpoint's header, and of its arrays."""
        return ({"history": dict(self), "train_acc_list": self.train_acc_list,
                 "test_acc_list": self.test_acc_list},
                {"train_loss_list": backends.to_numpy(self.train_loss_list)})

    def load_state(self, meta, arrays):
        """Back to what :meth:`state` saved."""
        self.clear()
        self.update(meta["history"])
        self.train_acc_list = list(meta["train_acc_list"])
        self.test_acc_list = list(meta["test_acc_list"])
        self.train_loss_list = arrays["train_loss_list"].tolist()
