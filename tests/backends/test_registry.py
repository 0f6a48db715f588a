"""backends/registry.py and backend.py: a backend is one class and one entry; the README's
"Adding a backend" is followed here, and array-api-strict's backend is nothing but hooks."""

import ast
import inspect
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import backends
from backends import strict
from backends.dispatch import use_fast_paths
from backends.standard import StandardBackend
from framework.optimizers import SGD
from framework.testing import check_parity
from models import TwoLayerNet
from tests.conftest import child_env


class MyLibBackend(StandardBackend):
    """The README's example, its library array-api-strict (whose arrays it claims)."""
    name = "mylib"
    modules = ("array_api_strict",)
    install = "pip install mylib"

    @classmethod
    def _load(cls):
        return pytest.importorskip("array_api_strict")

    @classmethod
    def devices(cls):
        return ["cpu"]

    @classmethod
    def default_device(cls):
        return cls._load().__array_namespace_info__().default_device()

    @classmethod
    def parse_device(cls, value):
        return cls.default_device()


@pytest.fixture
def mylib():
    backends.register("mylib", f"{__name__}:MyLibBackend")
    try:
        yield
    finally:
        backends.unregister("mylib")


def test_a_new_backend_is_one_class_and_one_entry(mylib):
    assert "mylib" in backends.NAMES and "mylib" in backends.CHOICES
    chosen = backends.use("mylib")
    assert chosen.name == "mylib" and backends.available().count("mylib") == 1
    net = TwoLayerNet(6, 5, 3, seed=0)
    x = chosen.asarray(np.random.default_rng(0).random((4, 6)), "float32")
    t = chosen.asarray(np.arange(4) % 3)
    assert backends.backend_of(net.params["W1"]).name == "mylib"
    SGD(lr=0.1).update(net.params, net.gradient(x, t))
    assert backends.ops_for(x).name == "standard"
    # the same numbers as NumPy's from the same seed
    check_parity(lambda: TwoLayerNet(6, 5, 3, seed=0).params["W1"], between=("numpy", "mylib"))


def test_an_unregistered_backend_is_gone(mylib):
    backends.unregister("mylib")
    with pytest.raises(ValueError, match="'mylib' is not a backend"):
        backends.use("mylib")
    backends.register("mylib", f"{__name__}:MyLibBackend")  # for the fixture to remove


def test_a_library_registered_again_gets_its_new_operations_and_unregistered_its_old():
    """The answers kept by array type (its backend, its namespace, its operations) follow
    an entry's change: none is served from before it."""
    xps = pytest.importorskip("array_api_strict")
    x = xps.asarray([1.0, 2.0])
    before = backends.ops_for(x)  # kept for array-api-strict's arrays from here
    assert backends.backend_of(x).name == "array_api_strict"
    backends.register("mylib", f"{__name__}:MyLibBackend")
    try:
        assert backends.backend_of(x).name == "mylib"
        assert backends.ops_for(x) is MyLibBackend.operations(backends.settings())
        assert backends.ops_for(x) is not before
    finally:
        backends.unregister("mylib")
    assert backends.backend_of(x).name == "array_api_strict" and backends.ops_for(x) is before


def test_kept_gives_back_the_default_backend_and_the_settings():
    """What the pytest plugin wraps every test in: whatever the block chose or changed, the
    default backend and the settings are the ones before it."""
    if "array_api_strict" not in backends.available():
        pytest.skip("array-api-strict is not installed")
    start, settings = backends.current(), backends.settings()
    other = "array_api_strict" if start.name != "array_api_strict" else "numpy"
    with backends.kept():
        backends.use(other)
        use_fast_paths(not settings.fast_paths)  # for the rest of the process, but for kept()
        assert backends.current().name == other and backends.settings() is not settings
    assert backends.current() is start and backends.settings() is settings
    with backends.kept():
        backends.reset()  # forgets both: read again from the environment
        backends.current()
    assert backends.current() is start and backends.settings() is settings


def test_kept_inside_a_using_block_gives_back_that_blocks_backend():
    """The plugin's ``kept()`` around a test that runs inside a ``using`` block: a ``use``
    within it changes the block's backend, and that change ends with ``kept``."""
    if "array_api_strict" not in backends.available():
        pytest.skip("array-api-strict is not installed")
    with backends.using("numpy") as outer:
        with backends.kept():
            backends.use("array_api_strict")
            assert backends.current().name == "array_api_strict"
        assert backends.current() is outer


def test_memory_running_out_on_a_refused_array_is_still_memory_running_out():
    """``out_of_memory`` asked about an error raised beside an array no backend takes (a
    masked array, say): a MemoryError is one whatever the array, anything else is not."""
    from backends.registry import REGISTRY
    masked = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    assert REGISTRY.out_of_memory(MemoryError(), masked)
    assert not REGISTRY.out_of_memory(ValueError("out of memory"), masked)


def test_array_api_strict_is_nothing_but_the_hooks():
    """backends/strict.py defines one class, whose methods are the hooks a library through
    the standard gives: how it loads, its devices, its arrays' namespace, and where its
    memory is."""
    tree = ast.parse(inspect.getsource(strict))
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [c.name for c in classes] == ["StrictBackend"]
    methods = {n.name for n in classes[0].body if isinstance(n, ast.FunctionDef)}
    assert methods <= {"_load", "namespace_of", "_info", "devices", "default_device",
                       "parse_device", "held_to_standard", "in_host_memory"}


def test_no_name_chains_outside_the_backends():
    """Nothing above backends/ decides by a backend's name what a library can do, beyond
    CuPy's GPU pools (a capability of that wing alone; the CUDA graph is asked for through
    ``graph_runtime()``)."""
    import pathlib
    root = pathlib.Path(backends.__file__).parent.parent
    found = []
    for top in ("framework", "models"):
        for path in (root / top).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if ".name ==" in line and ("numpy" in line or "torch" in line
                                            or "array_api_strict" in line):
                    found.append(f"{path.relative_to(root)}:{i}: {line.strip()}")
    assert not found, found


def test_a_name_is_taken_whatever_its_case_and_spaces(monkeypatch):
    """``XPNET_BACKEND=" NumPy "`` (a shell's quoting, a capital) and ``use("NumPy")`` pick
    NumPy; the name kept is the lower-case one."""
    assert backends.use("NumPy").name == "numpy"
    monkeypatch.setenv("XPNET_BACKEND", " NumPy ")
    backends.reset()
    assert backends.current().name == "numpy"


def test_a_refused_library_is_named_with_why():
    """A library the registry refuses (none now: JAX was the last) is said to be refused, with
    the reason, not called unknown."""
    from backends.registry import Registry
    registry = Registry(refused={"mylib": "mylib's arrays cannot be written to"})
    with pytest.raises(ValueError, match=r"XPNET_BACKEND='MyLib': mylib's arrays cannot be "
                                         r"written to, so it cannot be a backend; expected "
                                         r"one of numpy, "):
        registry.check_name("MyLib", "XPNET_BACKEND")
    with pytest.raises(ValueError, match=r"'nolib' is not a backend; expected one of numpy"):
        registry.check_name("nolib", "XPNET_BACKEND")


def test_a_library_is_probed_once_a_process_whether_it_loads_or_not():
    """``load`` imports the library the first time and keeps the answer, a refusal
    included: a missing library's failed import (CuPy's, on a machine without it) is not
    tried again each time a backend is looked for."""
    from backends.backend import Unusable
    tries = []

    class Loads(StandardBackend):
        name = "loads"

        @classmethod
        def _load(cls):
            tries.append(cls.name)
            return np

    class Missing(StandardBackend):
        name = "missing"

        @classmethod
        def _load(cls):
            tries.append(cls.name)
            raise ImportError("No module named 'missing'")
    for _ in range(3):
        assert Loads.load() is np and Loads.usable()[0]
        with pytest.raises(Unusable, match=r"missing failed to import \(ImportError: No module "
                                           r"named 'missing'\)"):
            Missing.load()
    assert tries == ["loads", "missing"]


def test_a_library_broken_in_its_own_way_is_named_and_the_others_run(tmp_path):
    """A library installed but failing as it imports with an error of its own, not an
    ImportError (a CUDA build of PyTorch whose shared library is missing: OSError), is
    one xpnet cannot use, said with that error; the rest goes on. A real package planted
    ahead of the installed ones: ``python -m backends`` lists it as unusable and succeeds,
    NumPy trains, and ``XPNET_BACKEND=torch`` says why it cannot, before any work."""
    planted = tmp_path / "torch"
    planted.mkdir()
    (planted / "__init__.py").write_text(
        'raise OSError("libtorch_cuda.so: cannot open shared object file")\n')
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    env.pop("XPNET_BACKEND", None)
    listed = subprocess.run([sys.executable, "-m", "backends"], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^  torch +unusable: torch failed to import \(OSError: libtorch_cuda\.so: "
                     r"cannot open shared object file\)$", listed.stdout, re.M), listed.stdout
    trains = "from models import TwoLayerNet; import numpy as np; " \
             "print(float(TwoLayerNet(4, 3, 2, seed=0).loss(np.ones((2, 4), np.float32), " \
             "np.array([0, 1]))))"
    numpy_run = subprocess.run([sys.executable, "-c", trains], capture_output=True, text=True,
                               timeout=300, env=dict(env, XPNET_BACKEND="numpy"), cwd=tmp_path)
    assert numpy_run.returncode == 0 and float(numpy_run.stdout) > 0, numpy_run.stderr
    torch_run = subprocess.run([sys.executable, "-c", trains], capture_output=True, text=True,
                               timeout=300, env=dict(env, XPNET_BACKEND="torch"), cwd=tmp_path)
    assert torch_run.returncode != 0
    assert "RuntimeError: XPNET_BACKEND=torch, but that backend cannot be used: torch failed " \
           "to import (OSError: libtorch_cuda.so: cannot open shared object file)" \
           in torch_run.stderr, torch_run.stderr


class Measured(np.ndarray):
    """A subclass of NumPy's array from a library of the user's own (astropy's Quantity and
    np.memmap are such subclasses)."""


def test_a_subclass_of_numpys_array_is_numpys():
    """Data as a subclass defined outside NumPy counted as a library named after its module
    ("arrays from different backends (x is tests on cpu, t is numpy, params is numpy)"); it
    is NumPy's, as np.memmap's always was."""
    rng = np.random.default_rng(40)
    x, t = rng.random((12, 4)).astype(np.float32), rng.integers(0, 3, 12)
    measured = x.view(Measured)
    assert backends.backend_of(measured).name == "numpy"
    assert backends.get_array_module(measured) is np
    net, plain = TwoLayerNet(4, 5, 3, seed=0), TwoLayerNet(4, 5, 3, seed=0)
    for key, g in net.gradient(measured, t).items():
        np.testing.assert_array_equal(np.asarray(g), plain.gradient(x, t)[key])
    from framework.trainer import Trainer
    trainer = Trainer(net, measured, t, measured, t, epochs=1, mini_batch_size=4, verbose=False)
    trainer.train()
    assert len(trainer.train_loss_list) == 3


def test_a_masked_array_is_refused_wherever_it_enters():
    """NumPy's masked arrays, a subclass too, lost their masks without a word: the Trainer
    trained on the masked values (a masked 1e30 among them), and a prediction failed in
    NumPy's masked product ("operands could not be broadcast together")."""
    from framework.trainer import Trainer
    backends.use("numpy")  # NumPy's subclass, on NumPy's network (restored after the test)
    rng = np.random.default_rng(41)
    x, t = rng.random((12, 4)).astype(np.float32), rng.integers(0, 3, 12)
    masked = np.ma.array(x, mask=np.zeros(x.shape, bool))
    masked[0, 0] = np.ma.masked
    refusal = r"NumPy's masked arrays cannot be computed on by xpnet: their masks would be " \
              r"dropped and the masked values used; fill them first \(a.filled\(value\)\)"
    net = TwoLayerNet(4, 5, 3, seed=0)
    for call in (lambda: net.predict(masked), lambda: net.gradient(masked, t),
                 lambda: backends.to_device(masked)):
        with pytest.raises(TypeError, match=refusal):
            call()
    for args, name in (((masked, t), "x_train"), ((x, np.ma.array(t)), "t_train")):
        with pytest.raises(TypeError, match=f"Trainer: {name}: " + refusal):
            Trainer(net, *args, x, t, epochs=1, mini_batch_size=4, verbose=False)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_a_matrix_or_a_sparse_array_is_refused_wherever_it_is_computed_on():
    """``numpy.matrix`` (scipy.sparse's ``.todense()`` gives one) is a subclass of NumPy's
    array whose ``*`` is a matrix product and whose sums keep two axes: ``loss`` returned
    the batch's losses summed into a 1 x 1 matrix (21.97 for 1.0986), ``accuracy`` 6.1,
    and ``gradient`` an IndexError. SciPy's sparse matrices were array-api-compat's
    "csr_matrix is not a supported array type". ``to_device`` converts a matrix, as it
    converts lists."""
    scipy_sparse = pytest.importorskip("scipy.sparse")
    from framework.trainer import Trainer
    backends.use("numpy")  # NumPy's subclass, on NumPy's network (restored after the test)
    rng = np.random.default_rng(42)
    x, t = rng.random((12, 4)).astype(np.float32), rng.integers(0, 3, 12)
    net = TwoLayerNet(4, 5, 3, seed=0)
    for given, refusal in ((np.asmatrix(x), r"numpy.matrix cannot be computed on by xpnet: "
                                            r"its \* is a matrix product"),
                           (scipy_sparse.csr_matrix(x), r"scipy arrays cannot be computed on "
                                                         r"by xpnet: its sparse matrices"),
                           (scipy_sparse.csr_array(x), r"scipy arrays cannot be computed on by "
                                                        r"xpnet: .*\(x.toarray\(\)\)")):
        for call in (lambda: net.predict(given), lambda: net.loss(given, t),
                     lambda: net.gradient(given, t), lambda: net.accuracy(given, t)):
            with pytest.raises(TypeError, match=refusal):
                call()
        with pytest.raises(TypeError, match="Trainer: x_train: " + refusal):
            Trainer(net, given, t, x, t, epochs=1, mini_batch_size=4, verbose=False)
    with pytest.raises(TypeError, match="numpy.matrix cannot"):
        net.loss(x, np.asmatrix(t))
    sent = backends.to_device(np.asmatrix(x))
    assert type(sent) is np.ndarray and np.array_equal(sent, x)
    assert net.loss(x, t) == net.loss(sent, t)


@pytest.mark.parametrize("data, words", [
    (None, r"holds Python objects \(dtype object\)"),
    ("1.0", r"holds text \(dtype <U3\)"),
    ([b"1"], r"holds bytes"),
    (np.array(["2026-12-06"], dtype="datetime64[D]"), r"holds dates"),
    (np.array([1.0, None], dtype=object), r"holds Python objects"),
    (np.ones(2, complex), r"holds complex numbers, and dtype float32 would drop their "
                          r"imaginary parts"),
], ids=["none", "text", "bytes", "dates", "objects", "complex-as-real"])
def test_to_device_refuses_host_data_that_holds_no_numbers(backend, data, words):
    """``None`` became NaN, ``"1.0"`` 1.0, a date its day count, complex numbers their real
    parts (with NumPy's ComplexWarning), each without an error; a buffer is read as NumPy
    reads it."""
    with pytest.raises(ValueError, match=rf"to_device: x {words}"):
        backends.to_device(data, "float32")
    a = backends.to_device(memoryview(np.arange(3.0)), "float32")
    np.testing.assert_array_equal(backends.to_numpy(a), [0.0, 1.0, 2.0])
