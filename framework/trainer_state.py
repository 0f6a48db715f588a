"""A run's state in its checkpoint: what the Trainer writes beside the network, and reads
back to resume exactly where it stood.

Beside the parameters (and layer state) that :mod:`framework.checkpoint` keeps, a
run holds its place (steps and epochs done, and how far into an interrupted epoch),
its histories, the optimizer's state and the batch generator's, so that the resumed
run draws the same batches and ends with the same bits as one never stopped.
"""

import math

import backends

from framework import checkpoint as ckpt
from framework.step import network_dtype


def save(trainer, path, position=0, epoch_losses=None):
    """Write ``trainer``'s run to ``path``; ``position`` steps into an epoch (with that
    epoch's losses) for an interrupted one, which a resume then finishes from the same
    order. In a data-parallel world rank 0 writes it: every rank holds the same state.
    Each part of the run gives its own state: the batches (where the draws stand), the
    history, the optimizer; the network's parameters and state are the checkpoint's."""
    if not trainer.world.is_root:
        return
    try:
        state = trainer.optimizer.state_dict()
    except TypeError as e:  # a reader's optimizer holding what a checkpoint cannot keep
        raise ckpt.CheckpointError(f"Trainer: could not write the checkpoint {path}: "
                                   f"{e}") from None
    history, history_arrays = trainer.history.state()
    meta = {"trainer": {
        "iteration": trainer.iteration, "epoch": trainer.current_epoch,
        "max_iter": trainer.max_iter, **history,
        "optimizer": _name(trainer.optimizer), "optimizer_iter": state.pop("iter"),
        "optimizer_settings": trainer.optimizer.settings(),
        # mid-epoch, the draws as they stood before this epoch's order was drawn
        **trainer.batches.state(mid_epoch=bool(position)),
        "position": position,
        "world_size": trainer.world.size,
    }}
    arrays = {f"optimizer/{k}": v for k, v in state.items()}
    arrays.update(history_arrays)
    if position:
        arrays["epoch_losses"] = epoch_losses
    try:
        ckpt.save(path, trainer.network, extra_meta=meta, extra_arrays=arrays)
    except OSError as e:
        raise ckpt.CheckpointError(
            f"Trainer: could not write the checkpoint {path}: "
            f"{e.strerror or type(e).__name__}{f' ({e.filename})' if e.filename else ''}; "
            f"the previous checkpoint was left as it was") from e


def restore(trainer, path):
    """Load the run saved at ``path`` into ``trainer`` (its network and optimizer too);
    returns ``(position, losses)``: how many steps into an interrupted epoch it stopped
    (0 at an epoch's end) and that epoch's losses so far.
    :class:`framework.checkpoint.CheckpointError`, before anything is changed, where the
    file holds no run, one trained with another optimizer or in another dtype, with its
    batches drawn otherwise, or an interrupted epoch without its losses. A run resumes on any world
    size: every process holds the whole state.

    The optimizer continues with the settings the run had reached (its learning rate
    after any schedule), as PyTorch's ``load_state_dict`` restores a parameter group's:
    the run goes on as if never stopped. To go on with another rate, set it on
    ``trainer.optimizer`` after the resume."""
    meta, arrays = ckpt.read(path)
    state = meta.get("trainer")
    if state is None:
        raise ckpt.CheckpointError(f"{path}: holds parameters only, no trainer state to "
                                   f"resume from")
    if state["optimizer"] != _name(trainer.optimizer):
        raise ckpt.CheckpointError(f"{path}: was trained with {state['optimizer']}, "
                                   f"not {_name(trainer.optimizer)}")
    saved, now = state.get("batches"), trainer.batches.describe()
    if saved is not None:  # (checkpoints of older versions hold none; before drop_last, off)
        saved = {"drop_last": False, **saved}
    if saved is not None and saved != now:
        differ = ", ".join(f"{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items()
                           if saved.get(k) != v)
        raise ckpt.CheckpointError(f"{path}: the run drew its batches otherwise ({differ}); "
                                   f"resume with the same data, mini_batch_size, sampling and "
                                   f"drop_last, or start a new run")
    trained_in, now_in = meta.get("dtype"), backends.dtype_name(network_dtype(trainer.network))
    if trained_in is not None and trained_in != now_in:
        raise ckpt.CheckpointError(
            f"{path}: the run trained in {trained_in}, the network is {now_in}; resume it "
            f"with a {trained_in} network, or start a new run from its parameters "
            f"(network.load_params(path) casts them to {now_in})")
    settings = state.get("optimizer_settings")  # (checkpoints of older versions hold none)
    if settings is not None:
        _check_settings(path, settings, trainer.optimizer)
    position = int(state.get("position", 0))
    losses = arrays.get("epoch_losses")
    if position and (losses is None or losses.shape != (position,)):
        raise ckpt.CheckpointError(f"{path}: stopped {position} steps into an epoch but "
                                   f"holds no matching epoch_losses")
    ckpt.load_read(path, meta, arrays, trainer.network)  # the file is read once
    opt_state = {k[len("optimizer/"):]: v for k, v in arrays.items()
                 if k.startswith("optimizer/")}
    opt_state["iter"] = state["optimizer_iter"]
    trainer.optimizer.load_state_dict(opt_state, trainer.network.params)
    for name, value in (settings or {}).items():  # the rates the run had reached
        setattr(trainer.optimizer, name, float(value))
    trainer.iteration = state["iteration"]
    trainer.current_epoch = state["epoch"]
    trainer.history.load_state(state, arrays)
    trainer.batches.load_state(state)
    return position, losses


def _name(optimizer):
    """The optimizer's class name (a reader's own, for one the Trainer adopted)."""
    return type(getattr(optimizer, "inner", optimizer)).__name__


def _check_settings(path, settings, optimizer):
    """:class:`CheckpointError` unless ``settings`` names exactly the settings ``optimizer``
    has, each a finite number (what :meth:`Optimizer.settings` wrote)."""
    names = tuple(optimizer.settings())
    if not isinstance(settings, dict) or sorted(settings) != sorted(names):
        raise ckpt.CheckpointError(
            f"{path}: holds the optimizer settings {settings!r}; expected numbers for "
            f"{', '.join(names)} ({_name(optimizer)})")
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value):
            raise ckpt.CheckpointError(f"{path}: holds the optimizer setting {name}={value!r}; "
                                       f"expected a finite number")
