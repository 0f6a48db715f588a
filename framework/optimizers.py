"""Parameter update rules of chapter 6, with the book's ``update(params, grads)``.

Every optimizer updates ``params`` **in place** where arrays are written in place
(NumPy, CuPy, PyTorch), so the layers that hold the arrays see the change; on JAX,
whose arrays are immutable, each update makes new arrays and puts them back into
``params`` (``params[key] = new``, which a :class:`models.base.Network`'s parameters
pass on to its layers) and into its own state. The state (velocities,
squared-gradient sums) lives as arrays on the parameters' own backend, created on the
first update. ``state_dict`` / ``load_state_dict`` move it to and from host arrays for
checkpoints.
"""

import math
import numbers
import weakref

import array_api_extra as xpx

from backends import backend_of, dtype_kind, get_array_module, ops_for, to_numpy


def _weakly(params):
    """A weak reference to ``params`` (a network's, a dict subclass), or None for a plain
    dict, which takes none."""
    try:
        return weakref.ref(params)
    except TypeError:
        return None


def _operations(params):
    """The operations for ``params``' first array, resolved once an update (one backend
    for them all), or None where there are no parameters."""
    for p in params.values():
        return ops_for(p)
    return None


def check_number(owner, name, value, low, high, *, low_open=False, high_open=True):
    """``value`` as a float inside the interval, or ``ValueError`` naming the argument and it.
    A string is refused (``"0.1"`` too, which ``float`` would read): a number is asked for."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and \
        (v < high if high_open else v <= high)
    if isinstance(value, (bool, str, bytes)) or not ok:
        interval = (f"{'(' if low_open else '['}{low:g}, "
                    f"{'inf' if high == math.inf else f'{high:g}'}{')' if high_open else ']'}")
        raise ValueError(f"{owner}: {name} must be a finite number in {interval}, got {value!r}")
    return v


class Hyperparameter:
    """A number an update reads (``lr``, ``momentum``...), checked whenever it is set: in
    the constructor, and later by a learning-rate schedule (``optimizer.lr = ...`` in a
    Trainer's callback) or a resume. ``ValueError`` naming the optimizer, the number and
    its interval (:func:`check_number`); kept as a float.

    The descriptor has no ``__get__``: the value lives in the instance's ``__dict__``
    and is read from there at an attribute's speed, so an update pays nothing for it."""

    def __init__(self, low, high, *, low_open=False):
        self.low, self.high, self.low_open = low, high, low_open

    def __set_name__(self, owner, name):
        self.name = name

    def __set__(self, optimizer, value):
        optimizer.__dict__[self.name] = check_number(type(optimizer).__name__, self.name, value,
                                                     self.low, self.high,
                                                     low_open=self.low_open)


def lend(optimizer, name, value):
    """Put ``value`` in place of the hyperparameter ``name`` unchecked: a compiled step
    lends its tracers (:mod:`framework.jit_step`) and puts the numbers back after."""
    if isinstance(getattr(type(optimizer), name, None), Hyperparameter):
        optimizer.__dict__[name] = value
    else:  # a subclass's own attribute (or property)
        setattr(optimizer, name, value)


class Optimizer:
    """Base class: state per parameter name, saved and restored as host arrays.

    Constructors refuse nonsense with ``ValueError`` naming the argument and
    its range: a learning rate must be finite and positive, momentum and
    betas lie in [0, 1), a decay rate in (0, 1); so does setting one later
    (``optimizer.lr = "0.01"`` in a schedule, which failed in the middle of the next
    update, or ``-0.1``, which trained uphill without a word). An update that fails on ``grads`` that
    do not fit ``params`` (a gradient missing, of another shape, not an array), or on
    parameters that do not fit the state its first update made (the optimizer reused for
    another network) or are not floating-point, names the parameter (:meth:`_explain`, on
    the failure path only: the parameters that fitted are updated by then)."""

    #: names of the per-parameter state arrays, e.g. ("v",) for Momentum
    slots = ()
    #: names of the numbers an update reads: a recorded CUDA-graph step bakes them in,
    #: and records again when one changes (a learning-rate schedule)
    hyperparameters = ("lr",)
    #: whether a recorded update can be replayed (a CUDA graph): no value
    #: computed on the host may change from step to step
    capturable = True
    #: whether the step is divided by the root of squared gradients plus 1e-7 (AdaGrad,
    #: RMSprop, Adam): such an update cannot work in float16 (:func:`float16_trouble`)
    divides_by_root_of_squares = False

    lr = Hyperparameter(0, math.inf, low_open=True)

    def __init__(self, lr):
        self.lr = lr
        self.state = {slot: None for slot in self.slots}
        self.iter = 0
        self._made_for = None  # a weak reference to the params its state was made for

    def _init_state(self, params):
        for slot in self.slots:
            if self.state[slot] is None:
                self.state[slot] = {key: get_array_module(p).zeros_like(p)
                                    for key, p in params.items()}
                self._made_for = _weakly(params)

    def state_of_another(self, params):
        """Whether this optimizer holds state (momenta, Adam's moments) that updates of
        another mapping than ``params`` made: a network's ``params`` (a network since built
        anew, in a loop of trials that reuses one optimizer object) whose state would start
        this one's run. False where it holds none, or where that cannot be told (a plain
        dict's, which keeps no weak reference)."""
        made_for = getattr(self, "_made_for", None)  # (a subclass that skipped __init__)
        if made_for is None or not any(self.state[slot] for slot in self.slots):
            return False
        return made_for() is not params

    def __getstate__(self):
        state = dict(vars(self))
        state["_made_for"] = None  # (a weak reference cannot be pickled; nor said for whom)
        return state

    def update(self, params, grads):
        raise NotImplementedError

    def _explain(self, params, grads):
        """``ValueError`` (``TypeError``) naming what keeps ``grads`` from updating
        ``params`` (a missing gradient, one of another shape, one that is not an array; a
        parameter its state was not made for; an integer parameter); nothing where it finds
        none. Looked at only where an update failed: a step checks nothing."""
        name = f"{type(self).__name__}.update"
        if not hasattr(grads, "keys"):
            raise TypeError(f"{name}: grads must be a dict of arrays by parameter name, got "
                            f"{type(grads).__name__}") from None
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"{name}: grads has no {', '.join(map(repr, missing))} (the "
                             f"parameters: {', '.join(params)}; grads: "
                             f"{', '.join(map(str, grads))})") from None
        for key, p in params.items():
            g = grads[key]
            if not hasattr(g, "shape"):
                raise TypeError(f"{name}: grads[{key!r}] is {type(g).__name__}, not an "
                                f"array") from None
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"{name}: grads[{key!r}] has shape {tuple(g.shape)}, but "
                                 f"params[{key!r}] {tuple(p.shape)}") from None
        for slot in self.slots:  # state made by a first update of other parameters
            kept = self.state[slot] or {}
            for key, p in params.items():
                a = kept.get(key) if kept else p
                if a is None or tuple(a.shape) != tuple(p.shape):
                    made = "missing" if a is None else f"of shape {tuple(a.shape)}"
                    raise ValueError(
                        f"{name}: params[{key!r}] has shape {tuple(p.shape)}, but this "
                        f"optimizer's state for it ({slot}[{key!r}]) is {made}: an optimizer "
                        f"keeps its state for the parameters of its first update; make a new "
                        f"{type(self).__name__} for another network") from None
        for key, p in params.items():
            if hasattr(p, "dtype") and dtype_kind(p.dtype) != "f":
                raise TypeError(f"{name}: params[{key!r}] is of dtype {p.dtype}; parameters "
                                f"are floating-point arrays") from None

    def _keep(self, params, key, p, slot, value):
        """Keep what an update of ``params[key]`` made: ``value`` in ``slot`` and ``p`` in
        ``params`` (the very arrays where they were written in place; on JAX the new ones,
        which a network's params pass on to its layers)."""
        self.state[slot][key] = value
        if p is not params[key]:
            params[key] = p

    def settings(self):
        """The numbers an update reads (:attr:`hyperparameters`) by name, as they stand now
        (a schedule may have changed them): what a checkpoint keeps, so that a resumed
        run continues with the rates it had reached. A subclass's hyperparameter that is
        not a number is left out (the checkpoint could not hold it, and must not fail)."""
        out = {}
        for name in self.hyperparameters:
            value = getattr(self, name)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                out[name] = float(value)
        return out

    def device_state(self):
        """The arrays an update reads and writes besides the parameters (the slots' arrays,
        once made), in a fixed order: what a recorded step holds and must find again."""
        return [a for slot in self.slots for a in (self.state[slot] or {}).values()]

    # --- for a compiled step (JAX): the state as named arrays ---------------------------

    def prepare(self, params):
        """Make the state the first update would make (zeros), without updating."""
        self._init_state(params)

    def arrays(self):
        """The state's arrays by name (``"<slot>/<param>"``), once :meth:`prepare` made them:
        what a compiled step threads through its pure function."""
        return {f"{slot}/{key}": a for slot in self.slots
                for key, a in (self.state[slot] or {}).items()}

    def put_arrays(self, arrays):
        """Put :meth:`arrays`' arrays (new ones, or a trace's) in their places."""
        for name, a in arrays.items():
            slot, key = name.split("/", 1)
            self.state[slot][key] = a

    def state_dict(self):
        """``{"iter": n, "<slot>/<param>": host array}``; empty slots are left out."""
        out = {"iter": self.iter}
        for slot, arrays in self.state.items():
            for key, a in (arrays or {}).items():
                out[f"{slot}/{key}"] = to_numpy(a).copy()  # a snapshot, not a view of live state
        return out

    def load_state_dict(self, state, params):
        """Restore :meth:`state_dict` output onto the backend of ``params``."""
        self.iter = int(state.get("iter", 0))
        for slot in self.slots:
            keys = [k for k in state if k.startswith(slot + "/")]
            if not keys:
                self.state[slot] = None
                continue
            self.state[slot] = {}
            for key, p in params.items():
                self.state[slot][key] = backend_of(p).asarray(state[f"{slot}/{key}"],
                                                              dtype=p.dtype)
            self._made_for = _weakly(params)

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """p <- p - lr * g"""

    def __init__(self, lr=0.01):
        super().__init__(lr)

    def update(self, params, grads):
        try:
            for p in params.values():  # the operations, resolved once: one backend for them all
                # one kernel a parameter on a GPU; a new array rebound to its key on JAX
                ops_for(p).sgd_update_all(params, grads, self.lr)
                return
        except Exception:  # what kind the library raises: ours, with names
            self._explain(params, grads)
            raise


class Momentum(Optimizer):
    """v <- momentum * v - lr * g;  p <- p + v"""

    slots = ("v",)
    hyperparameters = ("lr", "momentum")
    momentum = Hyperparameter(0, 1)

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        self.momentum = momentum

    def update(self, params, grads):
        try:
            self._init_state(params)
            ops = _operations(params)
            for key, p in params.items():
                p, v = ops.momentum_update(p, grads[key], self.state["v"][key], self.lr,
                                           self.momentum)
                self._keep(params, key, p, "v", v)
        except Exception:  # what kind the library raises: ours, with names
            self._explain(params, grads)
            raise


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, in the book's form (after Bengio et al., 2012):

    p <- p + momentum^2 * v - (1 + momentum) * lr * g;  then v <- momentum * v - lr * g

    with v the velocity before this step's: Bengio et al.'s p <- p - momentum * v +
    (1 + momentum) * v_new, v_new = momentum * v - lr * g, expanded. So the book's
    repository has it since its fix of 2021 ("Fix Nesterov update function"); the printed
    book's code, and ours before, updated v first, which is no Nesterov step
    (momentum^3 v, and an extra momentum^2 lr g).
    """

    def update(self, params, grads):
        try:
            self._init_state(params)
            ops = _operations(params)
            for key, p in params.items():
                p, v = ops.nesterov_update(p, grads[key], self.state["v"][key], self.lr,
                                           self.momentum)
                self._keep(params, key, p, "v", v)
        except Exception:  # what kind the library raises: ours, with names
            self._explain(params, grads)
            raise


class AdaGrad(Optimizer):
    """h <- h + g * g;  p <- p - lr * g / (sqrt(h) + 1e-7)"""

    slots = ("h",)
    divides_by_root_of_squares = True  # see float16_trouble

    def __init__(self, lr=0.01):
        super().__init__(lr)

    def update(self, params, grads):
        try:
            self._init_state(params)
            ops = _operations(params)
            for key, p in params.items():
                p, h = ops.adagrad_update(p, grads[key], self.state["h"][key], self.lr)
                self._keep(params, key, p, "h", h)
        except Exception:  # what kind the library raises: ours, with names
            self._explain(params, grads)
            raise


class RMSprop(Optimizer):
    """h <- decay * h + (1 - decay) * g * g;  p <- p - lr * g / (sqrt(h) + 1e-7)"""

    slots = ("h",)
    divides_by_root_of_squares = True
    hyperparameters = ("lr", "decay_rate")
    decay_rate = Hyperparameter(0, 1, low_open=True)

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr)
        self.decay_rate = decay_rate

    def update(self, params, grads):
        try:
            self._init_state(params)
            ops = _operations(params)
            for key, p in params.items():
                p, h = ops.rmsprop_update(p, grads[key], self.state["h"][key], self.lr,
                                          self.decay_rate)
                self._keep(params, key, p, "h", h)
        except Exception:  # what kind the library raises: ours, with names
            self._explain(params, grads)
            raise


def float16_trouble(optimizer):
    """Why ``optimizer`` cannot train parameters held in float16, or None where it can.

    float16's smallest number above 0 is 6e-8 and its largest 65504. A squared gradient
    below 6e-8 (a gradient below 2.4e-4, most of them) is 0 there, and the book's
    1e-7 rounds to 1.2e-7, so AdaGrad, RMSprop and Adam divide such a gradient by about
    1e-7: steps of up to ``lr * 1e7`` times it, which throw the parameters out of range
    within a few steps. SGD and the momentum methods have no such division (their steps
    smaller than float16's rounding of a parameter are lost instead, so they learn
    slower). The remedy is the book's own (8.3.4): train in float32 and cast the trained
    parameters to float16 for inference."""
    if not getattr(optimizer, "divides_by_root_of_squares", False):
        return None
    return (f"{type(optimizer).__name__} divides each gradient by the root of squared "
            f"gradients plus 1e-7, and in float16 a squared gradient below 6e-8 is 0, so "
            f"small gradients take steps up to {optimizer.lr!r} * 1e7 times their size: "
            f"train in float32 (the network's default dtype) and cast the trained "
            f"parameters to float16 for inference, as the book's 8.3.4 does")


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015), in the book's form, with bias correction folded into lr:

    lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t);
    m <- m + (1 - beta1)(g - m);  v <- v + (1 - beta2)(g^2 - v);
    p <- p - lr_t * m / (sqrt(v) + 1e-7)

    The step count ``t`` lives on the parameters' device (a float64 0-d
    array) and ``lr_t`` is computed there (``ops.adam_step_size``), so a
    recorded CUDA-graph step replays it with the right ``t`` each time. The
    numbers are the book's: on NumPy the same operations in the same order.
    ``iter`` reads the count back from the device, so it is for checkpoints
    and logs, not for every step.
    """

    slots = ("m", "v")
    divides_by_root_of_squares = True
    hyperparameters = ("lr", "beta1", "beta2")
    beta1 = Hyperparameter(0, 1)
    beta2 = Hyperparameter(0, 1)

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self._t = None  # the device's step count, made at the first update
        super().__init__(lr)
        self.beta1 = beta1
        self.beta2 = beta2

    @property
    def iter(self):
        """Steps taken (a read from the device when the count lives there)."""
        return self._iter if self._t is None else int(to_numpy(self._t))

    @iter.setter
    def iter(self, n):
        self._iter = int(n)
        if self._t is not None:  # in place: a recorded graph holds this array (JAX: a new one)
            self._t = xpx.at(self._t)[...].set(self._iter)

    def device_state(self):
        return super().device_state() + ([] if self._t is None else [self._t])

    def prepare(self, params):
        super().prepare(params)
        self._make_count(next(iter(params.values())))

    def arrays(self):
        return {**super().arrays(), **({} if self._t is None else {"t": self._t})}

    def put_arrays(self, arrays):
        arrays = dict(arrays)
        if "t" in arrays:
            self._t = arrays.pop("t")
        super().put_arrays(arrays)

    def _make_count(self, first):
        """The step count on ``first``'s device (float64 where it has it: Apple's MPS and
        JAX without JAX_ENABLE_X64 have not, float32 there), made once."""
        if self._t is None or get_array_module(self._t) is not get_array_module(first):
            backend = backend_of(first)
            wide = "float64" if backend.has_float64() else "float32"
            self._t = backend.full((), self.iter, wide)

    def update(self, params, grads):
        try:
            first = next(iter(params.values()))
            if isinstance(first, (int, float)):  # the book's 6.1.7 moves Python floats
                _as_numbers_with_a_dtype(params)
                first = next(iter(params.values()))
            self._init_state(params)
            self._make_count(first)
            ops = ops_for(first)
            self._t, lr_t = ops.adam_step_size(self._t, self.lr, self.beta1, self.beta2)
            m, v = self.state["m"], self.state["v"]
            for key, p in params.items():
                new, m[key], v[key] = ops.adam_update(p, grads[key], m[key], v[key], lr_t,
                                                      self.beta1, self.beta2)
                if new is not p:  # JAX: new arrays
                    params[key] = new
        except Exception:  # what kind the library raises: ours, with names
            self._explain(params, grads)
            raise


def _as_numbers_with_a_dtype(params):
    """Python numbers in ``params`` as NumPy's float64 scalars, in place: what the book's
    NumPy update makes of them after one step (Adam reads a parameter's dtype)."""
    for key, p in params.items():
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            params[key] = get_array_module(p).asarray(p, dtype="float64")[()]


OPTIMIZERS = {cls.__name__.lower(): cls
              for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)}


def get_optimizer(optimizer, optimizer_param=None):
    """An optimizer from a name (case-insensitive, as the book's Trainer takes) or an
    instance. (The Trainer also takes a reader's own: :mod:`framework.adopted_optimizer`.)"""
    if isinstance(optimizer, Optimizer):
        if optimizer_param:
            raise ValueError("optimizer_param is for optimizers given by name; this one is "
                             f"already built: {optimizer!r}")
        return optimizer
    key = str(optimizer).lower()
    if key not in OPTIMIZERS:
        names = ", ".join(cls.__name__ for cls in OPTIMIZERS.values())
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {names} (a name, "
                         f"any case), an instance of one, or an optimizer of your own: an "
                         f"object with update(params, grads)")
    params = {"lr": 0.01} if optimizer_param is None else dict(optimizer_param)
    try:
        return OPTIMIZERS[key](**params)
    except TypeError as e:
        raise ValueError(f"{OPTIMIZERS[key].__name__}: bad optimizer_param {params}: {e}") from None
