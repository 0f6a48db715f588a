"""Checkpoints: a network's parameters and layer state (and optionally a trainer's state) in one ``.npz``.

Host-side I/O. A checkpoint holds host arrays and a JSON header naming the
model class, its configuration and dtype, so a GPU-trained network loads on
a CPU-only machine and back. Files are written to a temporary name, flushed
and renamed, so a crash mid-write never replaces a good checkpoint with a
broken one. Loading reads and checks the whole file before it touches the
network: a mismatch or damage raises :class:`CheckpointError` and changes
nothing. No pickle: arrays are read with ``allow_pickle=False``.

:func:`load_params` (``Network.load_params``) also takes the book's own parameter files,
``params.pkl`` and ``deep_convnet_params.pkl``, read by :mod:`framework.book_params`
without running any code they might hold.
"""

import json
import os

import array_api_extra as xpx
import numpy as np

from backends import backend_of, dtype_name, to_numpy
from framework import book_params
from framework.files import atomic_open, user_path
from framework.step import network_dtype

FORMAT = "xpnet-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is damaged or belongs to another architecture."""


def save(path, network, extra_meta=None, extra_arrays=None):
    """Write ``network.params`` and ``network.state()`` (batch norm's running averages,
    dropout's generators), plus trainer state if given, to ``path`` atomically (``~``
    expanded, as every path here: :func:`framework.files.user_path`)."""
    path = user_path(path, "the checkpoint's path")
    meta = {"format": FORMAT, "version": VERSION, "model": type(network).__name__,
            "config": _config(network), "dtype": dtype_name(network_dtype(network))}
    meta.update(extra_meta or {})
    arrays = {f"param/{k}": to_numpy(v) for k, v in network.params.items()}
    arrays.update({f"state/{k}": v for k, v in _state(network).items()})
    arrays.update({k: np.asarray(v) for k, v in (extra_arrays or {}).items()})
    with atomic_open(path, prefix=".ckpt-") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def read(path):
    """``(meta, arrays)`` of a checkpoint file, all read into host memory and checked."""
    path = user_path(path, "the checkpoint's path")
    arrays = _taken(path, lambda f: {k: f[k] for k in f.files})
    return _checked_header(path, arrays.pop("meta", None)), arrays


def header(path):
    """A checkpoint's header (``meta``) alone, checked as :func:`read` checks it, without
    reading its arrays: what a script tells its user about a file it is about to replace."""
    path = user_path(path, "the checkpoint's path")
    return _checked_header(path, _taken(path, lambda f: f["meta"] if "meta" in f.files
                                        else None))


def _taken(path, take):
    """``take(archive)`` of the ``.npz`` at ``path``, opened without pickle;
    :class:`CheckpointError` where there is none or it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return take(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: a folder, not a checkpoint file") from None
    except PermissionError as e:  # the file may be whole: not "damaged"
        raise CheckpointError(f"{path}: this user may not read it ({e.strerror}); "
                              f"nothing was read") from None
    except Exception as e:  # truncated zip, bad CRC, object arrays, not an npz at all
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({_unreadable(path, e)})") \
            from None


def existing(path):
    """The header of the checkpoint at ``path``, or None where no file is there;
    :class:`CheckpointError` where the file there is not a checkpoint, or is a symbolic
    link to no file, which a run writing ``path`` would destroy (the Trainer and the
    training scripts refuse it)."""
    path = user_path(path, "the checkpoint's path")
    if not os.path.lexists(path):
        return None
    if not os.path.exists(path):  # a link to nothing: the run's rename would replace it
        raise CheckpointError(f"{path}: a symbolic link to {os.readlink(path)}, where "
                              f"there is no file")
    return header(path)


def _checked_header(path, text):
    try:
        if text is None:
            raise KeyError("meta")
        meta = json.loads(str(text))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: no readable header ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path}: not an xpnet checkpoint (format {found!r})")
    version = meta.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: its header's version {version!r} is not a number")
    if version > VERSION:
        raise CheckpointError(f"{path}: written by a newer xpnet (checkpoint version "
                              f"{meta['version']}, this one reads up to {VERSION})")
    return meta


def _unreadable(path, error):
    """Why NumPy could not read ``path``, in words; never NumPy's advice to unpickle it."""
    try:
        with open(path, "rb") as f:
            start = f.read(8)
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    if not start.startswith(b"PK"):  # an .npz is a zip file
        return f"not an .npz archive: it starts with {start!r}"
    if "allow_pickle" in str(error):
        return "it holds Python objects, and pickled data is never loaded"
    return f"{type(error).__name__}: {error}"


def load(path, network):
    """Copy a checkpoint's parameters into ``network``, in place (on JAX: new arrays in its
    parameters and layers), on its backend.

    Returns ``(meta, arrays)`` for callers that stored more (the Trainer).
    Values are cast to the network's dtype. Raises CheckpointError, leaving
    the network unchanged, for a damaged file or another architecture.
    """
    meta, arrays = read(path)
    load_read(path, meta, arrays, network)
    return meta, arrays


def load_params(path, network):
    """``Network.load_params``: a checkpoint (:func:`load`), or the book's pickled dict of
    parameters (its ``save_params``' files: ``params.pkl``, ``deep_convnet_params.pkl``),
    whose arrays must be this network's parameters by name and shape; they are cast to
    the network's dtype (the book's are float64). Such a file holds no layer state: batch
    norm's running averages and dropout's generators stay as they were. CheckpointError,
    the network unchanged, for anything else."""
    path = user_path(path, "the parameters' path")
    try:
        pickled = book_params.is_pickle(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except OSError:
        pickled = False  # a folder, say: read() words it
    if not pickled:
        load(path, network)
        return
    try:
        arrays = book_params.read(path)
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path}: a pickle, but not the book's parameters: {e}") \
            from None
    extra = [k for k in arrays if k not in network.params]
    if extra:
        raise CheckpointError(f"{path}: the book's parameters {', '.join(extra)} are not "
                              f"{type(network).__name__}'s (its parameters: "
                              f"{', '.join(network.params)})")
    _copy_params(network, _checked_params(path, network, arrays, "{key}"))


def load_read(path, meta, arrays, network):
    """:func:`load` for a checkpoint already :func:`read` (``path`` names it in errors)."""
    want = (type(network).__name__, _config(network))
    have = (meta.get("model"), meta.get("config"))
    (model, mine), (other, theirs) = _architecture(network, want), _architecture(network, have)
    if (model, mine) != (other, theirs):
        differ = ""
        if model == other and isinstance(theirs, dict):
            differ = " (" + "; ".join(f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here"
                                      for k in {**theirs, **mine}
                                      if theirs.get(k) != mine.get(k)) + ")"
        raise CheckpointError(f"{path}: checkpoint is {_described(*have)}, but the network "
                              f"is {_described(*want)}{differ}")
    values = _checked_params(path, network, arrays, "param/{key}")
    state = {}
    for key, buf in _state(network).items():
        a = arrays.get(f"state/{key}")
        if a is None or a.shape != buf.shape:
            found = "missing" if a is None else f"of shape {a.shape}"
            raise CheckpointError(f"{path}: layer state {key} (batch norm's running averages, "
                                  f"dropout's generator) is {found}, expected shape "
                                  f"{tuple(buf.shape)}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"{path}: layer state {key} holds NaN or infinite values")
        state[key] = a
    _copy_params(network, values)  # everything checked: now copy
    if state:
        network.load_state(state)


def _checked_params(path, network, arrays, name):
    """``{key: host array}`` for each of the network's parameters, found in ``arrays`` under
    ``name.format(key=key)``: CheckpointError for one missing, of another shape, or not
    finite."""
    values = {}
    for key, p in network.params.items():
        a = arrays.get(name.format(key=key))
        if a is None or a.shape != p.shape:
            found = "missing" if a is None else f"of shape {a.shape}"
            raise CheckpointError(f"{path}: parameter {key} is {found}, expected shape "
                                  f"{tuple(p.shape)}")
        if not np.isfinite(a).all():
            raise CheckpointError(f"{path}: parameter {key} holds NaN or infinite values")
        values[key] = a
    return values


def _copy_params(network, values):
    """Every parameter's ``values`` (checked) into the network, in place (on JAX: new arrays
    in its parameters and layers), cast to the network's dtype on its backend."""
    for key, p in list(network.params.items()):
        new = xpx.at(p)[...].set(backend_of(p).asarray(values[key], dtype=p.dtype))
        if new is not p:  # JAX: a new array, which the network's parameters pass on
            network.params[key] = new


def _config(network):
    """``network.config()``: a :class:`models.base.Network`'s constructor arguments; None
    for a network of the user's own written as the book's (``params``, ``gradient``),
    whose checkpoints then name its class and hold its parameters, their names and shapes
    checked on loading. (Such a network failed at its first epoch's end, "'BookNet' object
    has no attribute 'config'", after the epoch's work.)"""
    config = getattr(network, "config", None)
    return config() if callable(config) else None


def _described(model, config):
    """``TwoLayerNet{'input_size': 784, ...}``, or the class alone where there is no
    config (a network of the user's own)."""
    return f"{model}{config}" if config is not None else f"{model}"


def _architecture(network, described):
    """``(model, config)`` less the arguments that only drew the first weights
    (``network.init_only``: the initial scale), which a checkpoint's parameters replace."""
    model, config = described
    if not isinstance(config, dict):
        return described
    ignored = getattr(network, "init_only", ())
    return model, {k: v for k, v in config.items() if k not in ignored}


def _state(network):
    """A network's non-parameter arrays on the host, as a checkpoint holds them (see
    ``models.base.Network.host_state``; ``state``'s arrays copied for a network without
    it); none for others."""
    if hasattr(network, "host_state"):
        return network.host_state()
    if hasattr(network, "state"):
        return {k: to_numpy(v) for k, v in network.state().items()}
    return {}
