"""framework/optimizers.py: one step of each rule against hand-computed numbers."""

import re

import numpy as np

import backends
import pytest

from framework.optimizers import (OPTIMIZERS, SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop,
                                  get_optimizer)
from models import MultiLayerNet, TwoLayerNet
from tests.conftest import to_host


def step(xp, optimizer, times=1):
    params = {"w": backends.to_device([1.0, -2.0])}
    grads = {"w": backends.to_device([0.5, 0.25])}
    w = params["w"]
    for _ in range(times):
        optimizer.update(params, grads)
    # updated in place, so layers holding the array see it; JAX's arrays are immutable:
    # the update puts a new array in params (a network's params pass it on to the layers)
    assert (params["w"] is w) == backends.backend_of(w).mutable
    return to_host(params["w"])


# p = (1, -2), g = (0.5, 0.25); numbers worked by hand from each rule's docstring
@pytest.mark.parametrize("make, times, expected", [
    (lambda: SGD(lr=0.1), 1, [0.95, -2.025]),
    # v1 = -0.1 g = (-0.05, -0.025); v2 = 0.9 v1 - 0.1 g = (-0.095, -0.0475)
    (lambda: Momentum(lr=0.1, momentum=0.9), 2, [0.855, -2.0725]),
    # the book's (fixed) order, p by the old v: p1 = p - 0.19 g = (0.905, -2.0475);
    # v1 = -0.1 g; p2 = p1 + 0.81 v1 - 0.19 g = (0.7695, -2.11525)
    (lambda: Nesterov(lr=0.1, momentum=0.9), 2, [0.7695, -2.11525]),
    # h = g^2; step = 0.1 g / (|g| + 1e-7) = (0.05/0.5000001, 0.025/0.2500001)
    (lambda: AdaGrad(lr=0.1), 1, [0.90000002, -2.09999996]),
    # h = 0.01 g^2, sqrt(h) = (0.05, 0.025); step = (0.05/0.0500001, 0.025/0.0250001)
    #   = (0.999998000004, 0.99999600001599)
    (lambda: RMSprop(lr=0.1, decay_rate=0.99), 1, [1.999996e-06, -2.999996]),
    # lr_t = 0.001 sqrt(0.001)/0.1; m = 0.1 g; v = 0.001 g^2; m/sqrt(v) = sqrt(10) (less 1e-7)
    (lambda: Adam(lr=0.001), 1, [1 - 0.00099999368, -2 - 0.00099998735]),
    # hyperparameters other than the defaults, so a rule that ignored one fails:
    # v1 = -0.1 g = (-0.05, -0.025); v2 = 0.5 v1 - 0.1 g = (-0.075, -0.0375)
    (lambda: Momentum(lr=0.1, momentum=0.5), 2, [0.875, -2.0625]),
    # p1 = p - 0.15 g = (0.925, -2.0375); v1 = -0.1 g; p2 = p1 + 0.25 v1 - 0.15 g
    (lambda: Nesterov(lr=0.1, momentum=0.5), 2, [0.8375, -2.08125]),
    # h = 0.5 g^2, sqrt(h) = (0.35355339, 0.17677670); step = 0.1 g / (sqrt(h) + 1e-7)
    (lambda: RMSprop(lr=0.1, decay_rate=0.5), 1, [1 - 0.14142132, -2 - 0.14142128]),
    # lr_t = 0.001 sqrt(1 - 0.75) / (1 - 0.5) = 0.001; m = 0.5 g; v = 0.25 g^2 = m^2;
    # step = 0.001 |m| / (|m| + 1e-7), |m| = (0.25, 0.125)
    (lambda: Adam(lr=0.001, beta1=0.5, beta2=0.75), 1, [1 - 0.0009999996, -2 - 0.0009999992]),
])
def test_one_step_by_hand(xp, make, times, expected):
    np.testing.assert_allclose(step(xp, make(), times), expected, rtol=1e-8)


@pytest.mark.parametrize("name, lr", [("sgd", 0.5), ("momentum", 0.1), ("nesterov", 0.1),
                                      ("adagrad", 0.1), ("rmsprop", 0.01), ("adam", 0.01)])
def test_each_optimizer_lowers_the_loss(xp, name, lr):
    net = TwoLayerNet(12, 16, 4, seed=0, weight_init_std=0.1)
    rng = np.random.default_rng(0)
    x, t = backends.to_device(rng.random((32, 12)), "float32"), backends.to_device(rng.integers(0, 4, 32))
    optimizer = get_optimizer(name, {"lr": lr})
    before = float(net.loss(x, t))
    for _ in range(50):
        optimizer.update(net.params, net.gradient(x, t))
    assert float(net.loss(x, t)) < 0.8 * before
    for slot in optimizer.slots:  # state lives where the parameters live
        assert type(optimizer.state[slot]["W1"]) is type(net.params["W1"])


def test_state_dict_round_trip(xp):
    a = Adam(lr=0.01)
    params = {"w": backends.to_device([1.0, 2.0])}
    a.update(params, {"w": backends.to_device([0.1, 0.2])})
    state = a.state_dict()
    assert state["iter"] == 1 and isinstance(state["m/w"], np.ndarray)
    b = Adam(lr=0.01)
    b.load_state_dict(state, params)
    p1, p2 = {"w": backends.copy(params["w"])}, {"w": backends.copy(params["w"])}
    a.update(p1, {"w": backends.to_device([0.3, 0.1])})
    b.update(p2, {"w": backends.to_device([0.3, 0.1])})
    np.testing.assert_array_equal(to_host(p1["w"]), to_host(p2["w"]))


def test_a_state_without_slots_loaded_over_an_updated_optimizer_starts_it_afresh(xp):
    """A checkpoint written before any update holds no velocities: loading it leaves none
    of the optimizer's own behind, so its next update is a fresh optimizer's."""
    used, fresh = Momentum(lr=0.1), Momentum(lr=0.1)
    params = {"w": backends.to_device([1.0, 2.0])}
    used.update(params, {"w": backends.to_device([0.5, 0.5])})
    used.load_state_dict(fresh.state_dict(), params)
    assert used.state["v"] is None and used.iter == 0
    p1, p2 = {"w": backends.to_device([1.0, 2.0])}, {"w": backends.to_device([1.0, 2.0])}
    used.update(p1, {"w": backends.to_device([0.3, 0.1])})
    fresh.update(p2, {"w": backends.to_device([0.3, 0.1])})
    np.testing.assert_array_equal(to_host(p1["w"]), to_host(p2["w"]))


def test_settings_hold_numbers_only():
    """What a checkpoint keeps of the rates: numbers, as floats; a flag is not a rate (True
    would come back as 1.0) and is left out as any other value that is not a number."""
    class Flagged(Momentum):
        hyperparameters = ("lr", "momentum", "nesterov", "note")

        def __init__(self):
            super().__init__(lr=0.1, momentum=0.5)
            self.nesterov, self.note = True, "warm-up"
    settings = Flagged().settings()
    assert settings == {"lr": 0.1, "momentum": 0.5}
    assert all(type(v) is float for v in settings.values())


def test_adam_is_the_books_bit_for_bit_on_numpy():
    """The step count and step size moved to the device; on NumPy the arithmetic is
    unchanged: ten float32 steps equal the book's common/optimizer.py exactly (as NumPy 1,
    for which it was written, ran it)."""
    rng = np.random.default_rng(2)
    p = rng.standard_normal((30, 7)).astype(np.float32)
    grads = rng.standard_normal((10, 30, 7)).astype(np.float32)
    ours, adam = {"w": p.copy()}, Adam(lr=0.01)
    book, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for it, g in enumerate(grads, start=1):
        adam.update(ours, {"w": g})
        # a Python float, as NumPy 1 treated the book's np.float64 lr_t: in float32 math
        lr_t = float(0.01 * np.sqrt(1.0 - 0.999 ** it) / (1.0 - 0.9 ** it))
        m += (1 - 0.9) * (g - m)
        v += (1 - 0.999) * (g ** 2 - v)
        book -= lr_t * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_array_equal(ours["w"], book)
    assert backends.dtype_name(ours["w"].dtype) == "float32" and adam.iter == 10


def test_adam_step_count_lives_with_the_parameters(xp):
    a = Adam(lr=0.01)
    assert a.iter == 0 and a._t is None
    params = {"w": backends.to_device([1.0, 2.0])}
    for _ in range(3):
        a.update(params, {"w": backends.to_device([0.1, 0.2])})
    assert type(a._t) is type(params["w"]) and a._t.ndim == 0 and a.iter == 3
    t = a._t
    a.iter = 7  # written in place: a recorded CUDA graph holds this array (JAX: a new one)
    assert (a._t is t) == backends.backend_of(t).mutable and float(to_host(a._t)) == 7.0
    assert a.state_dict()["iter"] == 7
    b = Adam(lr=0.01)
    b.load_state_dict(a.state_dict(), params)
    assert b.iter == 7
    b.update(params, {"w": backends.to_device([0.1, 0.2])})
    assert b.iter == 8


def test_adam_follows_its_parameters_to_another_backend(xp):
    """Parameters moved (a network trained on the CPU, then on a device): the step count
    moves with them, and counts on."""
    a = Adam(lr=0.01)
    host = {"w": np.array([1.0, 2.0])}
    for _ in range(3):
        a.update(host, {"w": np.array([0.1, 0.2])})
    params = {"w": backends.to_device(host["w"])}
    a.load_state_dict(a.state_dict(), params)  # the slots follow the parameters
    a.update(params, {"w": backends.to_device([0.1, 0.2])})
    assert type(a._t) is type(params["w"]) and a.iter == 4
    np.testing.assert_allclose(to_host(params["w"]), _adam_by_hand(4), rtol=1e-12)


def _adam_by_hand(steps):
    p, m, v = np.array([1.0, 2.0]), np.zeros(2), np.zeros(2)
    g = np.array([0.1, 0.2])
    for t in range(1, steps + 1):
        lr_t = 0.01 * np.sqrt(1.0 - 0.999 ** t) / (1.0 - 0.9 ** t)
        m += (1 - 0.9) * (g - m)
        v += (1 - 0.999) * (g ** 2 - v)
        p -= lr_t * m / (np.sqrt(v) + 1e-7)
    return p


def test_get_optimizer_by_name_like_the_book():
    assert isinstance(get_optimizer("AdaGrad"), AdaGrad)
    assert get_optimizer("sgd").lr == 0.01  # optimizer_param=None means lr 0.01
    # the book's Trainer: lr 0.01 for every name, not each class's own default (Adam's 0.001)
    assert get_optimizer("adam").lr == get_optimizer("AdaGrad").lr == 0.01
    m = get_optimizer("Momentum", {"lr": 0.2, "momentum": 0.5})
    assert (m.lr, m.momentum) == (0.2, 0.5)
    adam = Adam()
    assert get_optimizer(adam) is adam
    with pytest.raises(ValueError, match=r"optimizer_param is for optimizers given by name; "
                                         r"this one is already built: Adam\(lr=0.001\)"):
        get_optimizer(adam, {"lr": 0.1})  # would have been dropped, silently
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'; expected one of SGD, Momentum"):
        get_optimizer("lbfgs")
    with pytest.raises(ValueError, match="SGD: bad optimizer_param"):
        get_optimizer("sgd", {"learning_rate": 0.1})


@pytest.mark.parametrize("make, message", [
    (lambda: SGD(lr=-1), r"SGD: lr must be a finite number in \(0, inf\), got -1"),
    (lambda: SGD(lr=0), r"SGD: lr must be a finite number in \(0, inf\), got 0"),
    (lambda: SGD(lr=float("nan")), "SGD: lr must be a finite number"),
    (lambda: SGD(lr="fast"), "SGD: lr must be a finite number"),
    # a number written as a string is not read as one (float() would): a number is asked for
    (lambda: SGD(lr="0.1"), r"SGD: lr must be a finite number in \(0, inf\), got '0.1'"),
    (lambda: Adam(beta1=b"0.9"), r"Adam: beta1 must be a finite number in \[0, 1\), got b'0.9'"),
    (lambda: Momentum(momentum=True), r"Momentum: momentum must be a finite number"),
    # a bool is no rate, though float() reads True as 1.0, which lies inside lr's interval
    (lambda: SGD(lr=True), r"SGD: lr must be a finite number in \(0, inf\), got True"),
    (lambda: Momentum(momentum=1.0), r"Momentum: momentum must be a finite number in \[0, 1\)"),
    (lambda: Nesterov(momentum=-0.1), r"Nesterov: momentum must be a finite number in \[0, 1\)"),
    (lambda: RMSprop(decay_rate=1), r"RMSprop: decay_rate must be a finite number in \(0, 1\)"),
    (lambda: Adam(beta1=1.5), r"Adam: beta1 must be a finite number in \[0, 1\)"),
    (lambda: Adam(beta2=float("inf")), "Adam: beta2 must be a finite number"),
    (lambda: get_optimizer("adagrad", {"lr": -0.1}), "AdaGrad: lr must be a finite number"),
])
def test_nonsense_is_refused_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make, name, bad, message", [
    (SGD, "lr", "0.01", r"SGD: lr must be a finite number in \(0, inf\), got '0\.01'"),
    (SGD, "lr", -0.1, r"SGD: lr must be a finite number in \(0, inf\), got -0\.1"),
    (Momentum, "momentum", 1.0, r"Momentum: momentum must be a finite number in \[0, 1\)"),
    (RMSprop, "decay_rate", None, r"RMSprop: decay_rate must be a finite number"),
    (Adam, "beta2", float("nan"), r"Adam: beta2 must be a finite number in \[0, 1\)")])
def test_a_rate_set_later_is_checked_as_the_constructor_checks_it(make, name, bad, message):
    """A schedule's ``optimizer.lr = "0.01"`` failed in the middle of the next update
    (NumPy's "ufunc 'multiply' did not contain a loop"), ``-0.1`` trained uphill and ``0``
    not at all, without a word. Set later, a rate is checked as the constructor checks it;
    a good one is kept as a float and read as a plain attribute (nothing on a step)."""
    optimizer = make()
    before = getattr(optimizer, name)
    with pytest.raises(ValueError, match=message):
        setattr(optimizer, name, bad)
    assert getattr(optimizer, name) == before  # left as it was
    setattr(optimizer, name, np.float32(0.5))
    assert type(getattr(optimizer, name)) is float and vars(optimizer)[name] == 0.5


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("change, error, message", [
    (lambda g: {k: v for k, v in g.items() if k != "b2"}, ValueError,
     r"update: grads has no 'b2' \(the parameters: W1, b1, W2, b2; grads: W1, b1, W2\)$"),
    (lambda g: {**g, "W1": g["W2"]}, ValueError,
     r"update: grads\['W1'\] has shape \(3, 2\), but params\['W1'\] \(4, 3\)$"),
    (lambda g: {**g, "b2": [0.0, 0.0]}, TypeError, r"update: grads\['b2'\] is list, not an array$"),
    (lambda g: list(g.values()), TypeError,
     r"update: grads must be a dict of arrays by parameter name, got list$")],
    ids=["missing", "misshapen", "a-list", "not-a-dict"])
def test_gradients_that_do_not_fit_the_parameters_are_named(backend, name, change, error,
                                                            message):
    """A user's own gradient(): a missing key was a bare KeyError, a transposed array
    NumPy's broadcasting error; now the optimizer names the parameter and both shapes."""
    net = TwoLayerNet(4, 3, 2, seed=0)
    x = backend.asarray(np.ones((2, 4)), "float32")
    grads = net.gradient(x, backend.asarray(np.array([0, 1])))
    optimizer = get_optimizer(name, {})
    with pytest.raises(error, match=rf"^{type(optimizer).__name__}\.{message}"):
        optimizer.update(net.params, change(grads))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_an_optimizer_reused_for_another_network_says_so(backend, name):
    """An optimizer keeps state (a velocity, squared-gradient sums) for the parameters of its
    first update. Reused for a network of other sizes it ended in NumPy's 'operands could
    not be broadcast together' (or a bare KeyError for a parameter it had never seen),
    after updating the parameters that still fitted; integer parameters in 'Cannot cast
    ufunc'. Each is now named."""
    rng = np.random.default_rng(2)
    x = backend.asarray(rng.random((3, 4)), "float32")
    t = backend.asarray(np.array([0, 1, 1]))
    first = TwoLayerNet(4, 3, 2, seed=0)
    optimizer = get_optimizer(name, {})
    optimizer.update(first.params, first.gradient(x, t))
    cls = type(optimizer).__name__
    if optimizer.slots:
        slot = optimizer.slots[0]
        wider = TwoLayerNet(4, 5, 2, seed=0)
        with pytest.raises(ValueError, match=re.escape(
                f"{cls}.update: params['W1'] has shape (4, 5), but this optimizer's state for "
                f"it ({slot}['W1']) is of shape (4, 3): an optimizer keeps its state for the "
                f"parameters of its first update; make a new {cls} for another network")):
            optimizer.update(wider.params, wider.gradient(x, t))
        deeper = MultiLayerNet(4, [3, 2], 2, seed=0)  # W1, b1, W2, b2 fit; W3 is new
        with pytest.raises(ValueError, match=re.escape(
                f"{cls}.update: params['W3'] has shape (2, 2), but this optimizer's state for "
                f"it ({slot}['W3']) is missing")):
            optimizer.update(deeper.params, deeper.gradient(x, t))
    fresh = get_optimizer(name, {})
    params = {"W1": backend.asarray(np.ones((4, 3), dtype=np.int64))}
    try:
        fresh.update(params, {"W1": backend.asarray(np.ones((4, 3)), "float32")})
    except TypeError as e:  # a library that writes in place cannot put floats in them
        assert re.fullmatch(re.escape(f"{cls}.update: params['W1'] is of dtype ") + r".*int.*"
                            + re.escape("; parameters are floating-point arrays"), str(e))
    else:  # JAX's update makes new arrays, floating-point ones
        assert backends.dtype_kind(params["W1"].dtype) == "f"


def _book_rule(name, lr):
    """Each rule of the book's ``common/optimizer.py`` (Nesterov as fixed there in 2021) for
    one Python number: ``step(p, g) -> p``, with its state in the closure."""
    import math
    state = {"v": 0.0, "h": 0.0, "m": 0.0, "t": 0}

    def step(p, g):
        if name == "SGD":
            return p - lr * g
        if name == "Momentum":
            state["v"] = 0.9 * state["v"] - lr * g
            return p + state["v"]
        if name == "Nesterov":
            p = p + 0.81 * state["v"] - 1.9 * lr * g
            state["v"] = 0.9 * state["v"] - lr * g
            return p
        if name == "AdaGrad":
            state["h"] += g * g
            return p - lr * g / (math.sqrt(state["h"]) + 1e-7)
        if name == "RMSprop":
            state["h"] = 0.99 * state["h"] + 0.01 * g * g
            return p - lr * g / (math.sqrt(state["h"]) + 1e-7)
        state["t"] += 1  # Adam
        t = state["t"]
        lr_t = lr * math.sqrt(1.0 - 0.999 ** t) / (1.0 - 0.9 ** t)
        state["m"] += 0.1 * (g - state["m"])
        state["v"] += 0.001 * (g * g - state["v"])
        return p - lr_t * state["m"] / (math.sqrt(state["v"]) + 1e-7)
    return step


@pytest.mark.parametrize("name, lr", [("SGD", 0.95), ("Momentum", 0.1), ("Nesterov", 0.1),
                                      ("AdaGrad", 1.5), ("RMSprop", 0.3), ("Adam", 0.3)])
def test_the_books_figure_of_the_optimizers_paths_on_python_numbers(name, lr):
    """6.1.7's comparison (``ch06/optimizer_compare_naive.py``): ``params`` and ``grads``
    hold Python floats, x and y of f(x, y) = x^2 / 20 + y^2. SGD left them where they were
    without a word (its update was in place, and a float is not), and Adam refused them
    ("grads['x'] is float, not an array"): the figure's SGD path was one point. Each path
    is now the book's rule's, step by step."""
    optimizer = OPTIMIZERS[name.lower()](lr=lr)
    rules = {"x": _book_rule(name, lr), "y": _book_rule(name, lr)}
    params, want = {"x": -7.0, "y": 2.0}, {"x": -7.0, "y": 2.0}
    for _ in range(30):
        grads = {"x": params["x"] / 10.0, "y": 2.0 * params["y"]}
        optimizer.update(params, grads)
        want = {k: rules[k](want[k], grads[k]) for k in want}
        assert float(params["x"]) == pytest.approx(want["x"], rel=1e-12, abs=1e-12)
        assert float(params["y"]) == pytest.approx(want["y"], rel=1e-12, abs=1e-12)
    assert abs(float(params["x"]) + 7.0) > 0.1  # it moved


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_an_optimizer_that_has_updated_a_network_pickles(backend, name):
    """An optimizer keeps a weak reference to the parameters its state was made for
    (:meth:`state_of_another`), which pickle cannot hold: a pickled optimizer (a user's
    copy, a process pool) drops it, keeps its state and steps on as the original does."""
    import pickle
    net = TwoLayerNet(4, 3, 2, seed=0)
    x = backend.asarray(np.ones((2, 4)), "float32")
    t = backend.asarray(np.array([0, 1]))
    opt = get_optimizer(name)
    opt.update(net.params, net.gradient(x, t))
    copy = pickle.loads(pickle.dumps(opt))
    assert not copy.state_of_another(net.params) and copy.iter == opt.iter
    twin = TwoLayerNet(4, 3, 2, seed=0)
    for key in twin.params:
        twin.params[key] = backend.asarray(to_host(net.params[key]))
    grads = net.gradient(x, t)
    opt.update(net.params, grads)
    copy.update(twin.params, grads)
    for key in net.params:
        np.testing.assert_array_equal(to_host(twin.params[key]), to_host(net.params[key]))
