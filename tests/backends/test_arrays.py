"""backends/registry.py and backends/dispatch.py: which namespace and operations an array gets,
the rank-order sum and the host generator of backends/arrays.py."""

import re

import numpy as np
import pytest

import backends
from backends import dispatch
from backends.arrays import sum_in_rank_order
from backends.registry import REGISTRY
from tests.conftest import to_host


def test_numpy_scalars_and_python_values_count_as_numpy():
    for value in (np.float32(1.5), np.int64(3), np.bool_(True), 2.0, 7, None):
        assert backends.array_namespace(value) is np, type(value)
        assert backends.ops_for(value) is backends.ops_for(np.ones(2)), type(value)
    assert backends.array_namespace(np.float32(1.0), np.ones(2)) is np


def test_an_arrays_namespace_and_operations_are_its_types_and_remembered(backend):
    x = backend.asarray(np.ones((2, 3), dtype=np.float32))
    xp = backends.array_namespace(x)
    ops = backends.ops_for(x)
    assert xp is backend.xp or backend.name == "cupy"  # CuPy: its own module or compat's
    assert REGISTRY._namespace_by_type[type(x)] is xp  # remembered by the array's type
    assert REGISTRY._ops_by_type[type(x)] is ops
    y = backend.asarray(np.zeros(4, dtype=np.float64))  # another dtype and shape, same type
    assert backends.array_namespace(y) is xp and backends.ops_for(y) is ops
    wings = {"numpy": "host", "cupy": "cupy-fused", "torch": "torch", "jax": "jax"}  # the wings
    assert ops.name == wings.get(backend.name, "standard")


def test_the_standard_is_chosen_for_numpy_too_when_the_fast_paths_are_off():
    x = np.ones(3)
    wing = backends.ops_for(x)
    with backends.configured(fast_paths=False):
        standard = backends.ops_for(x)
        assert standard is not wing and standard.name == "standard"
    assert backends.ops_for(x) is wing  # given back, the very same object
    previous = dispatch.use_fast_paths(False)  # the old switch, for the process
    try:
        assert previous is True and backends.ops_for(x) is standard
    finally:
        assert dispatch.use_fast_paths(previous) is False  # each call says what was
    assert backends.ops_for(x) is wing


def test_a_network_and_its_layers_that_resolved_their_operations_follow_a_change():
    """A network resolves its operations once per call and a layer once per kind of input,
    and keeps them: a change of the settings must reach them all the same (the registry's
    generation), and the change given back must too."""
    from models import TwoLayerNet
    net = TwoLayerNet(4, 3, 2, seed=0)
    x, t = np.ones((2, 4), dtype=np.float32), np.array([0, 1])
    layers = [net.layers["Affine1"], net.layers["Relu1"], net.layers["Affine2"]]

    def used():
        net.gradient(x, t)
        return [net._call.ops.name] + [layer._ops.name for layer in layers]
    assert used() == ["host"] * 4
    with backends.configured(fast_paths=False):
        assert used() == ["standard"] * 4
    assert used() == ["host"] * 4


def test_a_scoped_setting_is_given_back_even_after_an_error():
    before = backends.settings()
    with pytest.raises(RuntimeError):
        with backends.configured(host_kernels=False) as inside:
            assert not inside.host_kernels and backends.settings() is inside
            raise RuntimeError("in the block")
    assert backends.settings() is before
    with pytest.raises(TypeError, match="backends.using"):
        with backends.configured(backend="torch"):
            pass
    with pytest.raises(TypeError, match="no setting colour"):
        with backends.configured(colour="red"):
            pass


@pytest.mark.parametrize("name, kind", [("float32", "f"), ("float64", "f"), ("int64", "i"),
                                        ("uint8", "u"), ("bool", "b")])
def test_a_dtype_is_named_alike_in_every_form_every_library_gives_it(backend, name, kind):
    """A dtype is named by what it is, whether it comes as the library's dtype object, an
    array's ``.dtype``, a scalar type (``numpy.float64``, ``jax.numpy.float64``, which are
    classes: their own string was read as the name, ``"float64'>"``) or NumPy's dtype."""
    xp = backend.xp
    given = [backend.dtype(name), backend.asarray(np.zeros(2, dtype=name)).dtype,
             np.dtype(name), getattr(np, name if name != "bool" else "bool_")]
    if isinstance(getattr(xp, name, None), type):  # a scalar type: NumPy's and JAX's
        given.append(getattr(xp, name))
    for dtype in given:
        assert backends.dtype_name(dtype) == name, dtype
        assert backends.dtype_kind(dtype) == kind, dtype
    assert backends.dtype_name(backend.full((2,), 1, name).dtype) == name  # made in it too


@pytest.mark.parametrize("spelling, name", [("f4", "float32"), ("float", "float64"),
                                            ("double", "float64"), ("i8", "int64"),
                                            ("<f8", "float64"), (np.float32, "float32")])
def test_a_dtype_spelt_as_numpy_spells_it_is_that_dtype_on_every_backend(backend, spelling,
                                                                         name):
    """NumPy's spellings of a dtype were NumPy's alone: "f4" was "module 'array_api_compat.
    torch' has no attribute 'f4'" elsewhere, and "float" PyTorch's own float32 where NumPy
    reads float64: a network built with dtype="float" trained in float32 on PyTorch and in
    float64 on NumPy."""
    assert backends.dtype_name(backend.dtype(spelling)) == name
    assert backends.dtype_name(backend.asarray([1, 2], spelling).dtype) == name
    if name.startswith("float"):
        from models import TwoLayerNet
        net = TwoLayerNet(2, 2, 2, dtype=spelling)
        assert backends.dtype_name(net.params["W1"].dtype) == name


@pytest.mark.parametrize("spelling", ["bogus", "sum", "float128"])
def test_a_dtype_the_library_lacks_is_named(backend, spelling):
    """A name NumPy may know but the library has not ("float128"), or a word that is no
    dtype: the library's words ("module 'jax.numpy' has no attribute 'bogus'") or, for
    "sum", a function passed on as a dtype. NumPy's backend takes what NumPy takes."""
    try:
        dtype = backend.dtype(spelling)
    except TypeError as e:
        assert re.search(rf"(has no dtype {re.escape(repr(spelling))}; expected a name such as "
                         rf"'float32' or 'int64', a NumPy dtype, or \w+'s own"
                         rf"|data type {re.escape(repr(spelling))} not understood)", str(e)), e
    else:  # NumPy's float128, where the machine has it
        assert backends.dtype_name(dtype) == spelling


def test_float64_is_assumed_where_a_library_cannot_say():
    """A library without the standard's inspection namespace (or one that fails when asked)
    is taken to compute in float64, as NumPy and every GPU xpnet knows do; one that lists
    its dtypes is believed (MPS lists none of 64 bits)."""
    from types import SimpleNamespace

    from backends.arrays import has_float64

    def listing(*names):
        return SimpleNamespace(__array_namespace_info__=lambda: SimpleNamespace(
            dtypes=lambda device=None, kind=None: {n: n for n in names}))

    def failing():
        raise RuntimeError("no info")
    assert has_float64(SimpleNamespace(), "gpu")
    assert has_float64(SimpleNamespace(__array_namespace_info__=failing), "gpu")
    assert has_float64(listing("float32", "float64"), "gpu")
    assert not has_float64(listing("float32"), "mps")


def test_the_rank_order_sum_adds_the_rows_in_rank_order():
    """Floating-point addition is not associative, so the order is the result: rows 1.0,
    1e16 and -1e16 sum to 0.0 left to right (1 + 1e16 rounds to 1e16) and to 1.0 the other
    way. Every rank must add in rank order to hold the same bits."""
    rows = np.array([[1.0], [1e16], [-1e16]])
    assert sum_in_rank_order(rows).tolist() == [0.0]
    assert sum_in_rank_order(rows[::-1].copy()).tolist() == [1.0]
    assert rows.tolist() == [[1.0], [1e16], [-1e16]]  # the block itself untouched


@pytest.mark.parametrize("seed", [-1, 2.5, "seven", True, np.True_])
def test_a_seed_numpy_refuses_is_named_wherever_it_was_given(seed):
    """Parameters, batch order and dropout all draw from ``host_rng``: a seed it cannot take
    is a ValueError naming the seed, not NumPy's bare "expected non-negative integer". The
    Trainer's says it is the Trainer's (it did not), and ``seed=True``, which a network
    refuses, is refused for the batch order too (NumPy read it as 1)."""
    from framework.data import DeviceBatches
    from framework.layers import Dropout
    from framework.trainer import Trainer
    from models import TwoLayerNet
    message = f"seed={seed!r}: expected None or a non-negative integer"
    x, t = np.zeros((4, 2)), np.zeros(4, dtype=int)
    for make in (lambda: backends.host_rng(seed), lambda: TwoLayerNet(4, 3, 2, seed=seed),
                 lambda: DeviceBatches(x, t, 2, seed=seed), lambda: Dropout(0.5, seed=seed)):
        with pytest.raises(ValueError, match=re.escape(message)):
            make()
    with pytest.raises(ValueError, match="^" + re.escape("Trainer: " + message)):
        Trainer(TwoLayerNet(2, 3, 2), x, t, x, t, verbose=False, seed=seed)
    assert backends.host_rng(7).integers(100) == np.random.default_rng(7).integers(100)


def test_arrays_of_two_libraries_are_refused_whichever_comes_first():
    """array-api-strict's array first was taken at its word (its namespace came back, the
    PyTorch tensor beside it ignored); the other way round array-api-compat refused it."""
    torch = pytest.importorskip("torch")
    xs = pytest.importorskip("array_api_strict")
    t, s = torch.ones(2), xs.asarray([1.0, 2.0])
    for pair in ((t, s), (s, t)):
        with pytest.raises(TypeError, match=r"arrays from different libraries \((torch on cpu|"
                                            r"array_api_strict on .*) and .*\) in one "
                                            r"computation"):
            backends.array_namespace(*pair)
    assert backends.array_namespace(t, t, np.ones(2)) is backends.array_namespace(t)


def test_an_array_of_another_library_is_moved_through_the_host(backend):
    """``backend.asarray`` of another library's array (a PyTorch tensor on JAX, say) is an
    array of this backend's library on its device, with the same values: not the other
    library's array, which would mix two libraries in one computation."""
    host = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    for name in backends.available():
        if name == backend.name:
            continue
        with backends.using(name) as other:
            foreign = other.asarray(host)
        moved = backend.asarray(foreign)
        assert backends.backend_of(moved) == backend, name
        np.testing.assert_array_equal(backends.to_numpy(moved), host)


def test_memory_that_must_not_change_is_never_written_through_an_array_made_of_it(backend):
    """A read-only host array (a file mapped read-only; the host view of a JAX array's
    buffer): PyTorch's CPU tensors kept its memory, with a warning that writing it is
    undefined, and a parameter updated in place would have written into it. The array
    made of it is a copy where the library may write into it; NumPy's own is the very
    array, still read-only, so that a write is NumPy's error."""
    import warnings
    host = np.arange(4, dtype=np.float32)
    host.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = backend.asarray(host)
    if backend.name == "numpy":
        assert x is host
        return
    if backend.mutable:
        x[...] = 7
    assert host.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(backends.to_numpy(backend.asarray(host)), host)


def test_tensors_of_one_library_on_two_devices_are_refused():
    """One array type spanning devices (PyTorch's CPU and its meta device, which every build
    has): a layer's inputs on two devices are named, not computed on."""
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"here: arrays from different backends \(a is torch on "
                                        r"cpu, b is torch on meta\)"):
        backends.check_same_backend("here", a=torch.ones(2), b=torch.ones(2, device="meta"))
    backends.check_same_backend("here", a=torch.ones(2), b=torch.zeros(3))


def test_big_endian_host_data_reaches_every_backend_as_its_values(backend):
    """Data read from a big-endian file (``>f4`` images, ``>i8`` labels): PyTorch refused it
    ("Conversion between byte orders is currently not supported"), JAX ("not a valid JAX
    array type"), array-api-strict ("does not support the dtype '>f4'"). Sent in this
    machine's order, it trains as the same data in it does."""
    from framework.trainer import Trainer
    from models import TwoLayerNet
    rng = np.random.default_rng(12)
    x, t = rng.random((12, 4)).astype(np.float32), rng.integers(0, 3, 12)
    big_x, big_t = x.astype(">f4"), t.astype(">i8")
    np.testing.assert_array_equal(to_host(backend.asarray(big_x)), x)
    np.testing.assert_array_equal(to_host(backends.to_device(big_t)), t)
    runs = [Trainer(TwoLayerNet(4, 5, 3, seed=0), a, b, a, b, epochs=1, mini_batch_size=4,
                    verbose=False, seed=0) for a, b in ((x, t), (big_x, big_t))]
    for run in runs:
        run.train()
    assert runs[0].train_loss_list == runs[1].train_loss_list


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn"])
def test_bfloat16_and_float8_data_reach_every_backend_as_their_values(backend, name):
    """Images kept in bfloat16 or float8 to save memory: ml_dtypes' NumPy arrays (JAX's come
    to the host so), PyTorch's and JAX's own. The Trainer refused them ("dtype bfloat16;
    expected numbers (float or integer)"), ``to_device`` called them "raw records" and
    PyTorch's ``to_numpy`` failed ("Got unsupported ScalarType BFloat16"). Each value is a
    float32 exactly: sent so (as the library's own type where it has one), they train as the
    same values in float32 do."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from framework.trainer import Trainer
    from models import TwoLayerNet
    rng = np.random.default_rng(13)
    narrow = rng.random((12, 4)).astype(getattr(ml_dtypes, name))
    wide, t = narrow.astype(np.float32), rng.integers(0, 3, 12)
    assert backends.dtype_kind(narrow.dtype) == "f"
    sent = backends.to_device(narrow)
    np.testing.assert_array_equal(to_host(sent).astype(np.float32), wide)
    given = [wide, narrow]
    try:
        own = backend.asarray(wide, dtype=name)  # PyTorch's and JAX's own types
    except TypeError:
        own = None  # NumPy's, CuPy's and array-api-strict's have none
    if own is not None and backend.name != "numpy":
        assert backends.dtype_name(own.dtype) == name
        assert to_host(own).dtype == np.float32  # NumPy's type, which files and libraries take
        np.testing.assert_array_equal(to_host(own), wide)
        given.append(own)
    runs = [Trainer(TwoLayerNet(4, 5, 3, seed=0), x, t, x, t, epochs=1, mini_batch_size=4,
                    verbose=False, seed=0) for x in given]
    for run in runs:
        run.train()
    for run in runs[1:]:
        assert run.train_loss_list == runs[0].train_loss_list


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn"])
def test_a_network_too_narrow_for_the_layers_is_refused_by_name(backend, name):
    """A network in bfloat16 was "dtype must be a floating type, got bfloat16"; one in
    float8 was built on PyTorch and failed at its first ReLU ("clamp_min_scalar_cpu" not
    implemented for 'Float8_e4m3fn')."""
    from models import TwoLayerNet
    with pytest.raises(ValueError, match=f"TwoLayerNet: dtype {name} is too narrow for the "
                                         f"layers, which compute in float32 \\(the default\\), "
                                         f"float64 or float16; data in {name} is cast"):
        TwoLayerNet(4, 5, 3, dtype=name)


@pytest.mark.parametrize("device", ["CPU_DEVICE", "no_float64"])
def test_float16_where_the_library_has_none_is_named_alike_on_every_device(device):
    """array-api-strict (the standard) has no float16: a network asked for one was told
    "dtype must be a floating type, got 'float16'", and on the ``no_float64`` device a
    TypeError, "has no dtype 'float16'" (the device's name holds "float64", which let the
    library's error through as if it were the refusal of float64)."""
    from models import TwoLayerNet
    wide = ", or float64" if device == "CPU_DEVICE" else ""
    with backends.using("array_api_strict", device=device):
        with pytest.raises(ValueError, match=rf"^TwoLayerNet: array_api_strict on "
                                             rf"array_api_strict.Device\('{device}'\) has no "
                                             rf"float16; expected a floating type it has "
                                             rf"\(float32, the default{wide}\)$"):
            TwoLayerNet(4, 5, 3, dtype="float16")


def test_a_device_without_64_bit_integers_takes_labels_as_int32_and_names_what_needs_them():
    """array-api-strict's ``no_x64`` device, as JAX is without ``jax_enable_x64``: NumPy's
    int64 labels failed at the door ("Device ... does not support dtype=int64"), the loss
    cast the labels to the default device's int64 index type, and dropout's generator
    failed on uint64 in the library's words. Labels now go as int32 (the same numbers, or
    an error where one does not fit), the loss indexes with the device's own type, and
    dropout's generator is held in 32-bit words; networks train there as on any device,
    dropout's included (the gradients are float32 NumPy's, the masks NumPy's)."""
    import array_api_strict

    from framework.layers import Dropout
    from models import MultiLayerNetExtend
    if "no_x64" not in {str(d).split("'")[1] for d in
                        array_api_strict.__array_namespace_info__().devices()}:
        pytest.skip("this array-api-strict has no no_x64 device")
    rng = np.random.default_rng(0)
    x, t = rng.random((6, 4), dtype=np.float32), rng.integers(0, 3, 6)  # int64 labels
    def make():
        return MultiLayerNetExtend(4, [5, 5], 3, use_batchnorm=True, use_dropout=True,
                                   dropout_ration=0.4, seed=0)
    with backends.using("numpy"):
        reference = make()
        expected = reference.gradient(x, t)
        expected_twice = reference.gradient(x, t)  # the generator moved on: other masks
    with backends.using("array_api_strict", device="no_x64"):
        labels = backends.to_device(t)
        assert backends.dtype_name(labels.dtype) == "int32"
        np.testing.assert_array_equal(to_host(labels), t)
        with pytest.raises(ValueError, match=r"has no 64-bit integers, and these int64 values "
                                             r"\(0\.\.1099511627776\) do not fit in int32"):
            backends.to_device(np.array([0, 2**40]))
        net = make()
        assert backends.dtype_name(net.layers["Dropout1"].key.dtype) == "uint32"
        grads = net.gradient(backends.to_device(x), labels)
        for key, value in expected.items():
            np.testing.assert_allclose(to_host(grads[key]), value, rtol=1e-5, atol=1e-7)
        grads = net.gradient(backends.to_device(x), labels)  # the second step's masks
        for key, value in expected_twice.items():
            np.testing.assert_allclose(to_host(grads[key]), value, rtol=1e-5, atol=1e-7)
        assert Dropout(0.5).counter.shape == (2,)
        with pytest.raises(TypeError, match=r"has no 64-bit integers, so no uint64 is made "
                                            r"here: use a 32-bit integer dtype"):
            backends.current().asarray([1], dtype="uint64")
