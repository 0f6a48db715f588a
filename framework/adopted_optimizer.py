"""A reader's own optimizer, written as the book's (chapter 6's ``common/optimizer.py``), in
the Trainer: an object with ``update(params, grads)`` and its state in its attributes.

The book's optimizers keep their numbers as attributes (``self.lr``, Adam's ``self.iter``)
and their state as dicts of arrays by parameter name (``self.v = {}``, made on the first
update). :class:`AdoptedOptimizer` gives such an object what the Trainer asks of
:class:`framework.optimizers.Optimizer`, and runs its ``update`` as written:

* checkpoints keep every public number (``lr``, ``iter``...) and every dict of arrays
  (``v/W1``...), and a resume puts them back, so the run goes on as if never stopped;
  an attribute of another kind (a list of arrays, say) is named where the checkpoint
  would be written, since it could not be kept;
* its float numbers are its settings, as an :class:`Optimizer`'s hyperparameters: a
  schedule that changes one in a callback is written to the checkpoint at once;
* the step runs it eagerly: a CUDA graph or ``jax.jit`` would record the numbers it
  computes on the host once (the book's Adam's ``lr_t`` from ``self.iter``) and replay
  them, where each update must compute them anew.
"""

import numbers

from backends import backend_of, is_array, to_numpy
from framework.optimizers import Optimizer, get_optimizer

#: what a checkpoint's key says a saved number is (beside ``<attribute>/<parameter>``)
NUMBER = "number:"


class AdoptedOptimizer(Optimizer):
    """The Trainer's view of ``inner``, a reader's optimizer with ``update(params, grads)``."""

    capturable = False  # its host-side numbers change from update to update
    traceable = False   # (so does jax.jit's trace: run as written)
    hyperparameters = ()

    def __init__(self, inner):
        self.inner = inner
        self.state = {}
        self.iter = 0
        self._made_for = None

    # the book's attributes, as the Trainer and the scripts read them
    @property
    def lr(self):
        return getattr(self.inner, "lr", None)

    @lr.setter
    def lr(self, value):
        self.inner.lr = value

    def __setattr__(self, name, value):
        if name in ("inner", "state", "iter", "_made_for") or name.startswith("_"):
            object.__setattr__(self, name, value)
        else:  # a resume's or a schedule's number: the reader's object holds it
            setattr(self.inner, name, value)

    def __getattr__(self, name):  # what is not the Trainer's: the reader's object's
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def name(self):
        return type(self.inner).__name__

    def update(self, params, grads):
        self.inner.update(params, grads)

    def _attributes(self):
        return {k: v for k, v in vars(self.inner).items() if not k.startswith("_")}

    def settings(self):
        """Its float numbers (``lr``, ``momentum``...), as they stand now."""
        return {k: float(v) for k, v in self._attributes().items()
                if isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral))}

    def device_state(self):
        return []

    def state_of_another(self, params):
        return False  # (not known: the reader's object keeps no note of whose state it is)

    def state_dict(self):
        """``{"iter": 0, "number:<name>": 0-d host array, "<name>/<param>": host array}``:
        every public number and dict of arrays; ``TypeError`` naming an attribute of
        another kind holding arrays, which a checkpoint could not keep."""
        out = {"iter": self.iter}
        for name, value in self._attributes().items():
            if isinstance(value, bool) or value is None or isinstance(value, str):
                continue
            if isinstance(value, numbers.Number):
                out[NUMBER + name] = to_numpy(value)  # a 0-d host array
            elif isinstance(value, dict) and all(is_array(a) for a in value.values()):
                for key, a in value.items():
                    out[f"{name}/{key}"] = to_numpy(a).copy()
            elif is_array(value) or _holds_arrays(value):
                raise TypeError(
                    f"{self.name}.{name} is a {type(value).__name__}: a checkpoint keeps an "
                    f"optimizer's numbers and its dicts of arrays by parameter name (as the "
                    f"book's self.v = {{}}); keep it so, or train without a checkpoint")
        return out

    def load_state_dict(self, state, params):
        """Put :meth:`state_dict`'s numbers and arrays back on the reader's object, the
        arrays on the backend of ``params``."""
        self.iter = int(state.get("iter", 0))
        tables = {}
        for key, value in state.items():
            if key.startswith(NUMBER):
                setattr(self.inner, key[len(NUMBER):], value.item())
            elif "/" in key:
                name, param = key.split("/", 1)
                p = params[param]
                tables.setdefault(name, {})[param] = backend_of(p).asarray(value, dtype=p.dtype)
        for name, table in tables.items():
            setattr(self.inner, name, table)

    def __repr__(self):
        numbers_ = ", ".join(f"{k}={v!r}" for k, v in sorted(self._attributes().items())
                             if isinstance(v, numbers.Number))
        return f"{self.name}({numbers_}) (an optimizer of your own)"


def _holds_arrays(value):
    """Whether ``value`` (a list, a tuple, a dict of other things) holds an array."""
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, (list, tuple)) and any(is_array(v) or _holds_arrays(v)
                                                    for v in value)


def optimizer_for(optimizer, optimizer_param=None):
    """What the Trainer trains with: :func:`framework.optimizers.get_optimizer`'s (a name,
    or one of ours), or a reader's object with ``update(params, grads)``, adopted."""
    if isinstance(optimizer, (str, Optimizer)):
        return get_optimizer(optimizer, optimizer_param)
    if isinstance(optimizer, type):
        raise ValueError(f"optimizer={optimizer.__name__} is a class; give an instance "
                         f"({optimizer.__name__}(lr=0.01)), or a name with optimizer_param")
    if not callable(getattr(optimizer, "update", None)):
        return get_optimizer(optimizer, optimizer_param)  # its error, naming what it takes
    adopted = AdoptedOptimizer(optimizer)
    if optimizer_param:
        raise ValueError(f"optimizer_param is for optimizers given by name; this one is "
                         f"already built: {adopted!r}")
    return adopted
