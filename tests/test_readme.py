"""README.md: its Python examples run as written and print what their comments say."""

import os
import re
import subprocess
import sys

import pytest

import backends
from tests.conftest import ROOT
from tests.framework.idx_files import dataset_files, write_files


def python_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def block_starting(prefix):
    found = [b for b in python_blocks() if b.startswith(prefix)]
    assert len(found) == 1, f"README.md: expected one Python block starting {prefix!r}"
    return found[0]


def test_every_python_block_is_exercised_here():
    starts = sorted(b.splitlines()[0] for b in python_blocks())
    assert starts == ["# my_layers.py", "# test_my_layers.py",
                      "from backends.backend import Unusable",
                      "from framework.datasets import load_mnist, load_fashion_mnist, load_dataset",
                      "from framework.trainer import Trainer",
                      "from models import DeepConvNet", "import backends", "import backends"]


def test_adding_a_backend_example(monkeypatch):
    """The README's backend, registered as it says: a library that is not installed is
    named with how to install it (tests/backends/test_registry.py trains on one that is)."""
    import types
    module = types.ModuleType("readme_backend")
    exec(block_starting("from backends.backend import Unusable"), module.__dict__)
    monkeypatch.setitem(sys.modules, "readme_backend", module)
    cls = module.MyLibBackend
    assert cls.usable() == (False, "mylib is not installed; pip install mylib")
    backends.register("mylib", "readme_backend:MyLibBackend")
    try:
        assert "mylib" in backends.NAMES
        with pytest.raises(RuntimeError, match="XPNET_BACKEND=numpy") as e:
            backends.use("mylib")
        assert "mylib is not installed; pip install mylib" in str(e.value)
    finally:
        backends.unregister("mylib")


def test_layer_api_example(backend):
    ns = {}
    exec(block_starting("import backends\nfrom framework.layers"), ns)
    assert ns["price"] == pytest.approx(220)
    assert (ns["dapple_price"], ns["dtax"]) == (pytest.approx(1.1), pytest.approx(200))
    assert (ns["dapple"], ns["dapple_num"]) == (pytest.approx(2.2), pytest.approx(110))
    assert backends.backend_of(ns["net"].params["W1"]) == backend
    assert sorted(ns["grads"]) == ["W1", "W2", "b1", "b2"]


def test_deep_network_example(backend, capsys):
    ns = {}
    exec(block_starting("import backends\nfrom models import MultiLayerNet"), ns)
    assert capsys.readouterr().out == \
        "['Affine1', 'BatchNorm1', 'Activation_function1', 'Dropout1']\n"
    assert sorted(ns["grads"]) == sorted(ns["net"].params)
    assert ns["scores"].shape == (100, 10)
    assert list(ns["plain"].params) == ["W1", "b1"]
    assert backends.backend_of(ns["net"].layers["Dropout1"].mask) == backend


def test_data_and_trainer_examples(tmp_path, monkeypatch):
    # The data example loads MNIST; a local copy of IDX files stands in for it
    # (XPNET_DATA_DIR is the second place looked in).
    files, ((x_train, _), _) = dataset_files(n_train=300, n_test=50)
    write_files(tmp_path / "data" / "mnist", files)
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "data"))
    backends.reset()  # the settings are read once: read them again
    monkeypatch.chdir(tmp_path)  # the trainer example writes out/run.npz and net.npz
    ns = {}
    exec(block_starting("from framework.datasets import"), ns)
    assert ns["x_train"].shape == (300, 784) and ns["t_test"].shape == (50,)
    assert backends.to_numpy(ns["x_train"][0]) == pytest.approx(x_train[0].ravel() / 255)
    exec(block_starting("from framework.trainer import Trainer"), ns)
    assert len(ns["history"]["epoch"]) == 17
    assert len(ns["trainer"].train_loss_list) == 17 * 3
    assert (tmp_path / "out" / "run.npz").is_file() and (tmp_path / "net.npz").is_file()


def test_the_books_trained_parameters_example(tmp_path, monkeypatch):
    """The book's DeepConvNet file, as its save_params writes one (a pickled dict of float64
    arrays of DeepConvNet's names and shapes), loaded as the README shows."""
    import pickle
    import numpy as np
    from models import DeepConvNet
    rng = np.random.default_rng(0)
    shapes = {k: tuple(v.shape) for k, v in DeepConvNet(seed=0).params.items()}
    with open(tmp_path / "deep_convnet_params.pkl", "wb") as f:
        pickle.dump({k: rng.standard_normal(s) * 0.1 for k, s in shapes.items()}, f)
    monkeypatch.chdir(tmp_path)
    x_test = backends.to_device(rng.random((100, 1, 28, 28), dtype=np.float32))
    ns = {"x_test": x_test}
    exec(block_starting("from models import DeepConvNet"), ns)
    assert tuple(ns["y"].shape) == (100, 10)
    W1 = backends.to_numpy(ns["network"].params["W1"])
    with open(tmp_path / "deep_convnet_params.pkl", "rb") as f:
        np.testing.assert_array_equal(W1, pickle.load(f)["W1"].astype(np.float32))


def run_user_tests(tmp_path, layers_source, *args):
    (tmp_path / "my_layers.py").write_text(layers_source)
    (tmp_path / "test_my_layers.py").write_text(block_starting("# test_my_layers.py"))
    env = {k: v for k, v in os.environ.items() if k != "XPNET_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, str(tmp_path)])
    # -p names the plugin for a bare source tree; installed, it is already loaded
    return subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "framework.testing",
                           "-p", "no:cacheprovider", *args, "test_my_layers.py"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_testing_your_own_layer_example(tmp_path):
    layers = block_starting("# my_layers.py")
    r = run_user_tests(tmp_path, layers)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test_leaky_relu_backward[numpy] PASSED" in r.stdout
    assert "test_leaky_relu_backward[cupy]" in r.stdout
    # the backends the example's comment names are those it runs on (JAX had been left out)
    comment = re.search(r"# runs as (.*)$", block_starting("# test_my_layers.py"), re.M)
    ran = list(dict.fromkeys(re.findall(r"test_leaky_relu_backward\[(\w+)\]", r.stdout)))
    assert re.findall(r"\[(\w+)\]", comment.group(1)) == ran, ran
    r = run_user_tests(tmp_path, layers, "--xpnet-backend=numpy")
    assert "[cupy]" not in r.stdout and "2 passed" in r.stdout
    # the failure the README shows is the one a sign flip gives
    wrong = layers.replace("return dout * self.scale", "return -dout * self.scale")
    r = run_user_tests(tmp_path, wrong, "--xpnet-backend=numpy")
    assert r.returncode == 1
    readme = open(os.path.join(ROOT, "README.md")).read()
    shown = re.search(r"^```text\n(E       AssertionError: LeakyRelu.*?)^```", readme,
                      re.S | re.M).group(1)
    for line in shown.strip().splitlines():
        assert line in r.stdout, line


def test_every_test_the_documents_cite_exists():
    """README.md and docs/*.md cite tests as proof (``tests/x.py::test_y``, a table row's
    further names after it): a test renamed or gone leaves a claim citing nothing. The
    committed reports under docs/gpu/ and docs/bench/ name the tests of their own commit
    and stay as the tools wrote them."""
    import ast
    import glob
    defined = {}
    for path in glob.glob(os.path.join(ROOT, "tests", "**", "*.py"), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read())
        defined[os.path.relpath(path, ROOT)] = {
            n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    every = set().union(*defined.values())
    missing = []
    for doc in [os.path.join(ROOT, "README.md"),
                *glob.glob(os.path.join(ROOT, "docs", "*.md"))]:
        with open(doc) as f:
            text = f.read()
        where = os.path.relpath(doc, ROOT)
        for path, name in re.findall(r"(tests/[\w/]+\.py)::(\w+)", text):
            if name not in defined.get(path, ()):
                missing.append(f"{where}: {path}::{name}")
        for line in text.splitlines():  # a row citing one test by path, then more by name
            if "tests/" in line and "::" in line:
                for name in re.findall(r"`(test_\w+)`", line):
                    if name not in every:
                        missing.append(f"{where}: {name}")
    assert not missing, "documents cite tests that do not exist:\n" + "\n".join(missing)
