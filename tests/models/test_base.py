"""models/base.py: a model described with begin/add/finish gets the book's names and the walk."""

import re
from functools import partial

import numpy as np
import pytest

import backends

from framework.layers import Affine, BatchNormalization, Dropout, Relu, SoftmaxWithLoss
from framework.testing import check_model
from models import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet
from models.base import Network
from tests.conftest import to_host


class Tiny(Network):
    """Affine - BatchNorm - Relu - Dropout - Affine, described in a few lines."""

    def __init__(self, seed=0, dtype=None):
        self.begin(dtype, seed)
        self.add("Affine", Affine, W=self.weights(6, 5, std=0.5), b=self.zeros(5))
        self.add("BatchNorm", BatchNormalization, gamma=self.ones(5), beta=self.zeros(5))
        self.add("Relu", Relu)
        self.add("Dropout", partial(Dropout, 0.3, seed=self.dropout_seed()))
        self.add("Affine", Affine, W=self.weights(5, 3, std=0.5), b=self.zeros(3))
        self.finish(SoftmaxWithLoss())

    def config(self):
        return {}


def test_add_names_layers_and_parameters_as_the_book_does(backend):
    net = Tiny()
    assert list(net.layers) == ["Affine1", "BatchNorm1", "Relu1", "Dropout1", "Affine2"]
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2"]
    assert net.param_layout == {"W1": ("Affine1", "W"), "b1": ("Affine1", "b"),
                                "gamma1": ("BatchNorm1", "gamma"), "beta1": ("BatchNorm1", "beta"),
                                "W2": ("Affine2", "W"), "b2": ("Affine2", "b")}
    for key, (layer, attr) in net.param_layout.items():
        assert getattr(net.layers[layer], attr) is net.params[key]  # the very arrays
    assert net.layers["Affine1"].input_grad is False and net.layers["Affine2"].input_grad
    assert net.layers["Dropout1"].name == "Dropout1"
    assert set(net.state()) == {"BatchNorm1/running_mean", "BatchNorm1/running_var",
                                "Dropout1/key", "Dropout1/counter"}
    assert not hasattr(net, "_rng")  # the builder's generators are gone after finish()


def test_weights_come_from_the_seed_in_the_order_layers_are_added(backend):
    a, b = Tiny(seed=3), Tiny(seed=3)
    for key in a.params:
        np.testing.assert_array_equal(to_host(a.params[key]), to_host(b.params[key]))
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(to_host(a.params["W1"]),
                                  (0.5 * rng.standard_normal((6, 5))).astype(np.float32))
    np.testing.assert_array_equal(to_host(a.params["W2"]),
                                  (0.5 * rng.standard_normal((5, 3))).astype(np.float32))


def test_the_shared_walk_differentiates_a_described_model(backend, xp):
    net = Tiny(dtype="float64")
    rng = np.random.default_rng(1)
    check_model(net, backends.to_device(rng.standard_normal((4, 6))), backends.to_device([0, 1, 2, 1]))


def test_free_saved_drops_what_the_layers_kept_and_training_goes_on_the_same(backend, xp):
    """``free_saved`` after a step: every name a layer lists in ``saved`` was set by the step
    (no name misspelt), is None after, and the next steps give the very numbers they give
    without it (dropout's masks, batch norm's statistics, the loss layer's labels). Every
    kind of layer is in the first three nets: DeepConvNet, which adds none, is left out
    (on JAX it alone took 11 s of compiling, each of its shapes new)."""
    from framework.optimizers import Adam
    from tests.models.test_parity import NETS
    rng = np.random.default_rng(5)
    for name in ("two-layer", "extend", "simple-conv"):
        make, shape = NETS[name]
        x = backends.to_device(rng.random(shape).astype(np.float32))
        t = backends.to_device(rng.integers(0, 3, shape[0]))
        runs = []
        for free in (False, True):
            net, opt = make("float32"), Adam(lr=0.01)
            for step in range(3):
                opt.update(net.params, net.gradient(x, t))
                if free and step == 0:
                    layers = list(net.layers.values()) + [net.last_layer]
                    kept = [(layer.name, attr) for layer in layers for attr in layer.saved
                            if getattr(layer, attr) is None]
                    assert kept == [], (name, kept)
                    net.free_saved()
                    assert all(getattr(layer, attr) is None
                               for layer in layers for attr in layer.saved), name
            runs.append({k: to_host(v) for k, v in net.params.items()})
        for key in runs[0]:
            np.testing.assert_array_equal(runs[1][key], runs[0][key], err_msg=f"{name} {key}")


def test_an_update_through_params_reaches_the_layers(backend, xp):
    """The book's ``params[key] -= lr * grads[key]`` and the optimizers change what predict
    computes with: in place where arrays are written in place, and on JAX, whose arrays are
    immutable, because the network's params put each new array into its layer."""
    from framework.optimizers import SGD
    from models import MultiLayerNetExtend
    net = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=2)
    x = backends.to_device(np.random.default_rng(3).random((4, 6)), "float32")
    t = backends.to_device([0, 1, 2, 1])
    before = to_host(net.predict(x))
    grads = net.gradient(x, t)
    for key in net.params:  # the book's loop, verbatim
        net.params[key] -= 0.5 * grads[key]
    for key, (layer, attr) in net.param_layout.items():
        assert getattr(net.layers[layer], attr) is net.params[key], key
    after = to_host(net.predict(x))
    assert not np.allclose(after, before)
    SGD(lr=0.5).update(net.params, net.gradient(x, t))
    assert not np.allclose(to_host(net.predict(x)), after)
    for key, (layer, attr) in net.param_layout.items():
        assert getattr(net.layers[layer], attr) is net.params[key], key
    # dict's update() too (new arrays on every library: a user's own loop, say)
    net.params.update({key: p * 0.5 for key, p in net.params.items()})
    for key, (layer, attr) in net.param_layout.items():
        assert getattr(net.layers[layer], attr) is net.params[key], key


def test_a_parameter_rebound_to_what_its_layer_cannot_use_is_refused(backend, xp):
    """The book's plain dict took anything: W1 of another shape failed far away, float64
    into a float32 network mixed dtypes without a word, another library's array failed
    at the next call, a new name reached no layer, and a name deleted was passed over by
    the optimizers while its layer went on computing with it. Each is refused where it is
    done, and nothing changes; a fitting array is bound as before (copies too)."""
    import copy
    net = Tiny()
    x = backends.to_device(np.random.default_rng(3).random((4, 6)), "float32")
    before = to_host(net.predict(x))
    W1 = net.params["W1"]
    fits = backend.asarray(np.zeros((6, 5)), "float32")
    where = backend.name
    for value, got in (
            (backend.asarray(np.zeros((5, 6)), "float32"), f"shape (5, 6), dtype "
                                                          f"{fits.dtype} on {where}"),
            (backend.asarray(np.zeros((6, 5)), "float64"), "dtype "),
            ([[0.0] * 5] * 6, "list"),
            (np.zeros((6, 5), dtype=np.float64), "on numpy"),
            *_another_librarys_array_of_the_same_shape_and_dtype(backend)):
        with pytest.raises(ValueError, match=re.escape(
                f"params['W1']: expected an array of shape (6, 5) and dtype {fits.dtype} on "
                f"{where}, as it was; got ") + r".*" + re.escape(got)):
            net.params["W1"] = value
    # (a deep copy: PyTorch cannot unpickle its uint64 tensors, dropout's generator state)
    for twin in (net, copy.deepcopy(net)):
        with pytest.raises(ValueError, match=r"^params has no 'W3': a network's parameters are "
                                             r"the ones it was built with \(W1, b1, gamma1, "
                                             r"beta1, W2, b2\)"):
            twin.params["W3"] = fits
        for remove in (lambda p: p.__delitem__("W1"), lambda p: p.pop("W1"),
                       lambda p: p.popitem(), lambda p: p.clear()):
            with pytest.raises(TypeError, match=r"^a network's parameters cannot be removed"):
                remove(twin.params)
        for add in (lambda p: p.update(W3=fits), lambda p: p.setdefault("W3", fits),
                    lambda p: p.__ior__({"W3": fits})):  # dict's other ways in, |= too
            with pytest.raises(ValueError, match=r"params has no 'W3'"):
                add(twin.params)
        assert "W3" not in twin.params
    assert net.params["W1"] is W1 and net.layers["Affine1"].W is W1
    assert net.params.setdefault("W1", fits) is W1  # a name there keeps its array
    np.testing.assert_array_equal(to_host(net.predict(x)), before)
    net.params["W1"] = fits  # an array that fits: bound, and reaches the layer
    assert net.layers["Affine1"].W is fits
    again = backend.asarray(np.ones((6, 5)), "float32")
    net.params |= {"W1": again}  # so does one bound with |=
    assert net.params["W1"] is again and net.layers["Affine1"].W is again


def _another_librarys_array_of_the_same_shape_and_dtype(backend):
    """``[(array, words)]``: W1's shape and dtype in a library other than ``backend``'s
    (NumPy's; on NumPy, array-api-strict's where it is installed), which only the library
    tells apart from a fitting array."""
    if backend.name != "numpy":
        return [(np.zeros((6, 5), dtype=np.float32), "on numpy")]
    if "array_api_strict" not in backends.available():
        return []
    import array_api_strict
    return [(array_api_strict.zeros((6, 5), dtype=array_api_strict.float32),
             "on array_api_strict")]


def test_a_copied_or_pickled_network_keeps_its_params_tied_to_its_own_layers(backend, xp):
    """``copy.deepcopy`` (a hyperparameter search's starting point) and a pickle round trip
    of a network in use give one that computes as it does and whose ``params`` still pass
    each new array on to *its* layers (on JAX the only way an update reaches them), never
    to the original's. (A network that had computed once held its operations, and with
    them the library's module, which neither copies nor pickles.)"""
    import copy
    import pickle
    from models import MultiLayerNetExtend
    from models.parameters import Parameters
    net = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=2)
    x = backends.to_device(np.random.default_rng(3).random((4, 6)), "float32")
    t = backends.to_device([0, 1, 2, 1])
    grads = {k: to_host(g) for k, g in net.gradient(x, t).items()}  # a network in use
    original = to_host(net.predict(x))
    copies = [copy.deepcopy(net), pickle.loads(pickle.dumps(net))]
    for twin in copies:  # computes as the original does, on its own arrays
        for key, g in twin.gradient(x, t).items():
            np.testing.assert_array_equal(to_host(g), grads[key], err_msg=key)
    for twin in copies:
        assert type(twin.params) is Parameters and twin.params.reaches_layers
        twin.params["W1"] = twin.params["W1"] * 0  # a new array bound to the key
        assert twin.layers["Affine1"].W is twin.params["W1"]
        assert not np.allclose(to_host(twin.predict(x)), original)
        np.testing.assert_array_equal(to_host(net.predict(x)), original)  # untouched


def test_a_network_with_dropout_copies_and_pickles_with_its_generator(backend):
    """Dropout's key and position are uint64 arrays, which PyTorch pickles but cannot
    unpickle ("type object 'torch.storage.UntypedStorage' has no attribute 'dtype'"): a
    PyTorch network with dropout could not be pickled back. A copy and a pickle draw the
    masks the original draws next, on every backend, and keep uint64."""
    import copy
    import pickle
    from models import MultiLayerNetExtend
    net = MultiLayerNetExtend(6, [5], 3, use_dropout=True, dropout_ration=0.4, seed=4)
    x = backends.to_device(np.random.default_rng(5).random((8, 6)), "float32")
    t = backends.to_device([0, 1, 2, 1, 0, 2, 1, 0])
    net.gradient(x, t)  # the generator moved on
    copies = [copy.deepcopy(net), pickle.loads(pickle.dumps(net))]
    grads = {k: to_host(g) for k, g in net.gradient(x, t).items()}
    for twin in copies:
        assert backends.dtype_name(twin.layers["Dropout1"].key.dtype) == "uint64"
        for key, g in twin.gradient(x, t).items():
            np.testing.assert_array_equal(to_host(g), grads[key], err_msg=key)


def test_a_list_where_an_array_belongs_is_named_and_other_errors_stay_their_own(backend):
    """The book passes arrays; a list of numbers (or of rows) is refused naming the method
    and the argument, where it used to end in "'list' object has no attribute 'shape'".
    An array that fails for another reason keeps its own error."""
    import pytest
    net = Tiny()
    rng = np.random.default_rng(0)
    x, t = backend.asarray(rng.random((4, 6)), "float32"), backend.asarray(np.arange(4) % 3)
    calls = {"predict": lambda x, t: net.predict(x), "loss": net.loss,
             "gradient": net.gradient, "accuracy": net.accuracy,
             "numerical_gradient": net.numerical_gradient}
    for what, call in calls.items():
        for name, args in (("x", (to_host(x).tolist(), t)), ("t", (x, to_host(t).tolist()))):
            if what == "predict" and name == "t":
                continue
            with pytest.raises(TypeError, match=rf"Tiny\.{what}: {name} must be an array "
                                                rf"\(NumPy's, or the network's backend's\), "
                                                rf"got list"):
                call(*args)
    with pytest.raises(ValueError, match="Affine1: input has 5 features, W expects 6"):
        net.gradient(x[:, :5], t)
    with pytest.raises(ValueError, match="SoftmaxWithLoss: x has 4 samples but t has 3"):
        net.loss(x, t[:3])
    for bad in (0, -1, 2.5, True):  # range(0, n, -1) counted nothing: an accuracy of 0.0
        with pytest.raises(ValueError, match=rf"Tiny\.accuracy: batch_size must be a positive "
                                             rf"integer \(or None: 10000\), got {bad!r}"):
            net.accuracy(x, t, batch_size=bad)
    assert net.accuracy(x, t, batch_size=3) == net.accuracy(x, t) == net.accuracy(x, t, None)


def test_numerical_gradient_refuses_the_inputs_gradient_refuses(backend):
    """numerical_gradient's stacked passes (the loss layer's forward_stack) took any labels:
    one past the classes became a one-hot row of zeros (that sample's loss 0) and a 0-d
    label was broadcast against every score, each a gradient of the wrong loss without a
    word; float labels ran too; a 0-d x ended in 'not enough values to unpack' and an
    empty batch in 'cannot reshape' (then in batch norm's NumPy warnings). Each is now
    refused in gradient's words."""
    net = Tiny(dtype="float64")
    rng = np.random.default_rng(5)
    x = backend.asarray(rng.random((4, 6)), "float64")
    t = backend.asarray(np.array([0, 1, 2, 1]))
    for bad_x, bad_t, message in (
            (x, backend.asarray(np.array([0, 1, 3, 1])),
             "SoftmaxWithLoss: labels must lie in 0..2 for 3 classes, got values 0..3"),
            (x, backend.asarray(np.array([0, -1, 2, 1])),
             "SoftmaxWithLoss: labels must lie in 0..2 for 3 classes, got values -1..2"),
            (x, backend.asarray(np.array(1)),
             "SoftmaxWithLoss: t has shape (); expected one-hot (4, 3) or integer labels (4,)"),
            (x, backend.asarray(np.array([0.0, 1.0, 2.0, 1.0])),
             "SoftmaxWithLoss: 1-D labels must be integer class indices, got dtype "
             f"{backend.asarray(np.zeros(1)).dtype}"),  # in the library's words
            (x, backend.asarray(np.eye(4)[[0, 1, 2, 1]]),
             "SoftmaxWithLoss: t has shape (4, 4); expected one-hot (4, 3) or integer labels "
             "(4,)"),
            (x[0, ...], t, "Affine1: expected a batch of shape (N, ...), got shape (6,) "
                           "(use x[None] for a single sample)"),
            (backend.asarray(np.array(1.0), "float64"), t,
             "Affine1: expected a batch of shape (N, ...), got shape () (use x[None] for a "
             "single sample)"),
            (x[:0, ...], t[:0, ...], "BatchNorm1: an empty training batch (shape (0, 5)) has "
                                     "no mean to normalise by; expected at least 2 samples")):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            net.numerical_gradient(bad_x, bad_t)
    grads = net.numerical_gradient(x, t)  # and good inputs after them as before
    for key, g in net.gradient(x, t).items():
        np.testing.assert_allclose(to_host(grads[key]), to_host(g), atol=1e-7)


def test_labels_that_do_not_fit_the_batch_are_named_by_accuracy(backend):
    """accuracy broadcast what it was given: one label against every sample (an accuracy
    read as a fraction of the batch), one label too many (the first N used), one-hot rows of
    another width (argmax over the wrong classes), each without a word."""
    net = Tiny(seed=1)
    x = backends.to_device(np.random.default_rng(0).random((4, 6)), "float32")
    for labels, message in (
            (np.zeros(1, dtype=int), r"Tiny\.accuracy: x has 4 samples but t has shape \(1,\); "
                                     r"expected labels \(4,\) or one-hot rows \(4, classes\)"),
            (np.zeros(5, dtype=int), r"x has 4 samples but t has shape \(5,\)"),
            (np.zeros((4, 3, 1)), r"x has 4 samples but t has shape \(4, 3, 1\)"),
            (np.zeros((4, 5)), r"Tiny: t's one-hot rows have 5 classes, but the network "
                               r"scores 3")):
        with pytest.raises(ValueError, match=message):
            net.accuracy(x, backends.to_device(labels))
    one_hot = backends.to_device(np.eye(3)[[0, 1, 2, 1]])
    assert net.accuracy(x, one_hot) == net.accuracy(x, backends.to_device([0, 1, 2, 1]))
    with pytest.raises(ValueError, match=r"^Tiny\.accuracy: expected a batch x of shape "
                                         r"\(N, \.\.\.\), got a 0-d array$"):  # IndexError
        net.accuracy(x[0, 0], backends.to_device(np.array(1)))
    with pytest.raises(ValueError, match=r"x has 6 samples but t has shape \(\); expected "
                                         r"labels \(6,\) or one-hot rows \(6, classes\); for "
                                         r"one sample and its label, pass x\[None\] and "
                                         r"t\[None\]$"):
        net.accuracy(x[0, ...], backends.to_device(np.array(1)))
    with pytest.raises(ValueError, match=r"^Tiny\.accuracy: empty batch$"):  # not 0 / 0
        net.accuracy(x[:0, ...], backends.to_device(np.zeros(0, dtype=int)))


@pytest.mark.parametrize("cls, kwargs", [
    (MultiLayerNet, dict(input_size=6, hidden_size_list=[5, 4], output_size=3,
                         activation="sigmoid", weight_init_std=0.2, weight_decay_lambda=0.1)),
    (MultiLayerNetExtend, dict(input_size=6, hidden_size_list=[5], output_size=3,
                               weight_init_std="xavier", use_dropout=True, dropout_ration=0.3,
                               use_batchnorm=True)),
    (SimpleConvNet, dict(input_dim=(1, 8, 8), conv_param={"filter_num": 3, "filter_size": 3,
                                                          "pad": 1, "stride": 1},
                         hidden_size=7, output_size=4, weight_init_std=0.05)),
    (DeepConvNet, dict(input_dim=(1, 16, 16), conv_param_3={"filter_num": 8, "filter_size": 3,
                                                            "pad": 1, "stride": 1},
                       hidden_size=9, output_size=4)),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_a_networks_config_is_every_argument_that_builds_it_again(cls, kwargs):
    """``config()`` is every constructor argument but dtype and seed (checkpoints record
    it; a data-parallel job's ranks compare it), as given: built again from it with the
    same seed, the network is the same, its initial scale included."""
    net = cls(**kwargs, seed=5)
    config = net.config()
    for key, value in kwargs.items():
        assert config[key] == (list(value) if isinstance(value, tuple) else value), key
    again = cls(**config, seed=5)
    assert again.config() == net.config() and list(again.params) == list(net.params)
    for key in net.params:
        np.testing.assert_array_equal(to_host(again.params[key]), to_host(net.params[key]))
    assert [type(layer).__name__ for layer in again.layers.values()] == \
        [type(layer).__name__ for layer in net.layers.values()]


def test_a_training_flag_that_is_not_a_bool_is_named(backend, xp):
    """``train_flg="False"`` (out of a config file) was true: the prediction dropped units
    and moved batch norm's running averages, without a word. NumPy's booleans, 0 and 1
    are flags too."""
    net = MultiLayerNetExtend(6, [5], 3, use_dropout=True, use_batchnorm=True, seed=0)
    x = backends.to_device(np.random.default_rng(0).random((4, 6)), "float32")
    t = backends.to_device(np.arange(4) % 3, "int64")
    expected = to_host(net.predict(x, train_flg=False))
    averages = {k: to_host(v).copy() for k, v in net.state().items()}
    for flag in ("False", None, [False]):
        with pytest.raises(ValueError, match=rf"MultiLayerNetExtend.predict: train_flg must "
                                             rf"be True or False, got {re.escape(repr(flag))}"):
            net.predict(x, train_flg=flag)
    with pytest.raises(ValueError, match="MultiLayerNetExtend.loss: train_flg must be True"):
        net.loss(x, t, train_flg="no")
    for layer in (Dropout(0.5), BatchNormalization(backends.to_device(np.ones(6), "float32"),
                                                   backends.to_device(np.zeros(6), "float32"))):
        with pytest.raises(ValueError, match=rf"{type(layer).__name__}.forward: train_flg"):
            layer.forward(x, "False")
    for flag in (np.False_, 0):
        np.testing.assert_array_equal(to_host(net.predict(x, train_flg=flag)), expected)
    for key, value in net.state().items():
        np.testing.assert_array_equal(to_host(value), averages[key], err_msg=key)


def test_a_numerical_gradient_in_float32_warns_that_float64_checks_gradients():
    """The book's 5.7.3 typed out on the default float32 network printed differences near
    4e-4 where the book prints 1e-10 to 1e-13 (its arrays are float64): float32's rounding
    of the loss, not backprop. Said where it is taken; check_model says so itself."""
    import warnings
    from framework.gradient import LowPrecisionWarning
    from models import TwoLayerNet
    rng = np.random.default_rng(5)
    host = rng.random((3, 4))
    x, x32 = backends.to_device(host), backends.to_device(host.astype(np.float32))
    t = backends.to_device(rng.integers(0, 3, 3))
    with pytest.warns(LowPrecisionWarning, match=r"^TwoLayerNet.numerical_gradient in float32: "
                                                 r".*build the network with dtype='float64'"):
        TwoLayerNet(4, 5, 3).numerical_gradient(x32, t)
    with pytest.warns(LowPrecisionWarning, match="numerical_gradient_elementwise in float32") \
            as said:
        TwoLayerNet(4, 5, 3).numerical_gradient_elementwise(x32, t)
    assert len(said) == 1, [str(w.message) for w in said]  # once, not again per parameter
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TwoLayerNet(4, 5, 3, dtype="float64").numerical_gradient(x, t)
        check_model(TwoLayerNet(4, 5, 3, weight_init_std=1.0, seed=2), x32, t, rtol=1, atol=1)


def _refuses_what_it_cannot_hold():
    """Whether this kernel refuses an allocation larger than its memory at once (Linux's
    overcommit modes 0 and 2), rather than promising it and ending the process when it is
    touched (mode 1): the only machine a test may ask for a terabyte on."""
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() in ("0", "2")
    except OSError:
        return False


@pytest.mark.skipif(not _refuses_what_it_cannot_hold(),
                    reason="this kernel promises memory it has not (overcommit mode 1)")
def test_a_batch_too_large_for_memory_is_named_on_every_backend(backend):
    """PyTorch says it with a RuntimeError ("DefaultCPUAllocator: can't allocate memory",
    torch.OutOfMemoryError on CUDA) and JAX with a JaxRuntimeError ("RESOURCE_EXHAUSTED",
    or "Out of memory allocating" at the end of a read's INTERNAL error): each passed
    through untranslated, where NumPy's MemoryError was named with what to do. A batch of
    4 MB whose hidden layer would take 256 GB. JAX dispatches asynchronously: its eager
    predict and gradient return before the allocation fails, so on JAX only accuracy, which
    reads its count, can say it."""
    from models import TwoLayerNet
    net = TwoLayerNet(1, 2**16, 10, seed=0)
    n = 2**20
    x = backends.to_device(np.zeros((n, 1), np.float32))
    t = backends.to_device(np.zeros(n, np.int32))
    calls = [(lambda: net.accuracy(x, t, batch_size=n), "give a smaller batch_size")]
    if backend.name != "jax":
        calls += [(lambda: net.predict(x), r"pass it in parts \(accuracy does"),
                  (lambda: net.gradient(x, t), r"train on smaller batches")]
    for call, fix in calls:
        with pytest.raises(MemoryError, match=rf"^TwoLayerNet.\w+: a batch of {n} samples needs "
                                              rf"more memory than this device has \(.+\); "
                                              rf"{fix}") as info:
            call()
        assert backends.out_of_memory(info.value.__cause__, net.params["W1"])  # its own, kept
    assert not backends.out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
                                      net.params["W1"])


@pytest.mark.backends("numpy")
@pytest.mark.skipif(not _refuses_what_it_cannot_hold(),
                    reason="this kernel promises memory it has not (overcommit mode 1)")
def test_a_batch_too_large_for_memory_is_named_with_what_to_do(backend):
    """NumPy said "Unable to allocate 840. GiB for an array with shape (268435456, 784)",
    naming neither the network nor what to do. (The batch is one image repeated, a view
    of 3 KB: only the network's own arrays would need the memory.)"""
    from models import TwoLayerNet
    net = TwoLayerNet(784, 50, 10)
    n = 2**28
    x = np.broadcast_to(np.zeros((1, 784), np.float32), (n, 784))
    t = np.broadcast_to(np.zeros(1, np.int64), (n,))
    for call, fix in ((lambda: net.predict(x), r"pass it in parts \(accuracy does"),
                      (lambda: net.gradient(x, t), r"train on smaller batches"),
                      (lambda: net.accuracy(x, t, batch_size=n), "give a smaller batch_size")):
        with pytest.raises(MemoryError, match=rf"^TwoLayerNet.\w+: a batch of {n} samples needs "
                                              rf"more memory than this device has \(Unable to "
                                              rf"allocate .*\); {fix}") as info:
            call()
        assert isinstance(info.value.__cause__, MemoryError)  # NumPy's own, kept
    # accuracy in parts: the batch named is the part that did not fit, not the whole of x
    with pytest.raises(MemoryError, match=rf"^TwoLayerNet.accuracy: a batch of {n // 2} "
                                          rf"samples needs more memory"):
        net.accuracy(x, t, batch_size=n // 2)


def test_a_prediction_from_another_thread_waits_for_the_training_step(backend):
    """A network's layers keep what a step's backward needs (an Affine its input): a
    prediction from a second thread in the middle of a training step (a notebook's live
    plot, a service answering while it fine-tunes) took the step's inputs from under its
    backward: a crash where the batches differed in size, wrong gradients where they did
    not. One thread's call at a time now: the run is the one made without predictions."""
    import sys
    import threading

    from framework.optimizers import SGD
    from models import TwoLayerNet
    rng = np.random.default_rng(0)
    x = backends.to_device(rng.random((16, 6)), "float32")
    t = backends.to_device(rng.integers(0, 3, 16))
    queries = [backends.to_device(rng.random((n, 6)), "float32") for n in (16, 40)]

    def train(net, failures, steps=150, go=None):
        try:
            opt = SGD(0.1)
            if go is not None:
                go.wait()  # the main thread is predicting by now
            for _ in range(steps):
                opt.update(net.params, net.gradient(x, t))
        except Exception as e:  # noqa: BLE001 - reported by the test
            failures.append(e)

    alone = TwoLayerNet(6, 8, 3, seed=0)
    train(alone, [])
    shared, failures, go = TwoLayerNet(6, 8, 3, seed=0), [], threading.Event()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter will
    try:
        worker = threading.Thread(target=train, args=(shared, failures),
                                  kwargs={"go": go})
        worker.start()
        predictions = 0
        while not go.is_set() or worker.is_alive():
            for q in queries:
                assert shared.predict(q).shape == (q.shape[0], 3)
                predictions += 1
            go.set()  # training starts once a prediction has run, so that the two meet
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failures, failures
    assert predictions > 2  # some while the step ran
    for key in alone.params:
        np.testing.assert_array_equal(to_host(shared.params[key]), to_host(alone.params[key]))


def test_each_call_after_a_nested_one_is_an_outermost_call_again(backend):
    """``gradient`` calls ``loss``, which calls ``predict``, inside the one call's scope.
    After it, the next call is an outermost one again, with its checks (a list named as
    such, not Python's words about a list's dtype), and the lock it took is given back
    (another thread's prediction runs)."""
    import threading

    from models import TwoLayerNet
    net = TwoLayerNet(4, 3, 2, seed=0)
    x = backends.to_device(np.ones((2, 4)), "float32")
    t = backends.to_device(np.array([0, 1]))
    net.gradient(x, t)
    for _ in range(2):
        with pytest.raises(TypeError, match=r"^TwoLayerNet\.predict: x must be an array"):
            net.predict([[1.0, 2.0, 3.0, 4.0]])
    assert net._call.local.depth == 0
    done = []
    worker = threading.Thread(target=lambda: done.append(net.predict(x).shape))
    worker.start()
    worker.join(timeout=60)
    assert done == [(2, 2)]
