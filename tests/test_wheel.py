"""pyproject.toml: the wheel a user installs works, from a folder outside the source tree.

An editable install (``pip install -e .``, what ``make`` does) finds every
module through the checkout and so hides a package or a kernel source the
wheel forgot. Here the wheel is built as ``pip wheel .`` builds it, installed
into a fresh virtual environment (its dependencies from the package index,
as a user gets them), and used from an empty folder: ``python -m backends``,
a few training steps of SimpleConvNet on the compiled kernels, built into a
fresh ``XPNET_CACHE_DIR``, a user's tests on the installed pytest plugin, and
a user's script data-parallel under the ``distributed`` extra's ``mpiexec``.
About a minute on a fresh machine.
"""

import ast
import pathlib
import shutil
import subprocess
import sys
import venv
import zipfile

import numpy as np
import pytest

from backends import mpi_env
from tests.conftest import ROOT

TRAIN = r'''
import os, sys
import numpy as np
import backends, framework, models
from framework.trainer import Trainer
from models import SimpleConvNet
assert not any(p.startswith(sys.argv[1]) for p in (framework.__file__, models.__file__,
               backends.__file__)), "imported from the source tree, not the wheel"
rng = np.random.default_rng(0)
x = rng.random((60, 1, 28, 28), dtype=np.float32)
t = rng.integers(0, 10, 60)
net = SimpleConvNet(seed=0)
trainer = Trainer(net, x, t, x[:20], t[:20], epochs=1, mini_batch_size=20, optimizer="Adam",
                  optimizer_param={"lr": 0.001}, verbose=False, seed=0)
trainer.train()
kernels, why = backends.backend_class("numpy").kernels(backends.settings())
print("kernels:", why)
print("losses:", len(trainer.train_loss_list), all(np.isfinite(trainer.train_loss_list)))
'''


def run(args, timeout=600, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # from a clean copy: setuptools leaves build/ in a tree it built, and a later build
    # ships whatever is there, so a wheel built in place can hide a package it lacks
    source = tmp_path_factory.mktemp("source") / "xpnet"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "out", "data", ".gpu-data", ".gpu-pkgs",
        ".hypothesis", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(source)])
    assert "deprecat" not in (built.stdout + built.stderr).lower(), built.stderr
    (path,) = out.glob("xpnet-*.whl")
    return path


def test_the_wheel_holds_every_package_and_kernel_source(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for top in ("framework", "backends", "models"):
        for path in pathlib.Path(ROOT, top).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".c", ".h", ".cu", ".cuh") \
                    and "__pycache__" not in path.parts:
                name = path.relative_to(ROOT).as_posix()
                if name not in names:
                    missing.append(name)
    assert not missing, f"the wheel lacks {missing}"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh virtual environment holding the wheel with its ``distributed`` extra
    (mpi4py, MPICH's mpiexec) and pytest: its python."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # without PYTHONPATH: a source tree on it (with its egg-info) would pass for the install
    run([python, "-m", "pip", "install", "-q", f"{wheel}[distributed]", "pytest"],
        env=outside_env())
    return python


def outside_env(**extra):
    """The environment less what points into the source tree, picks a backend or says
    this process was started by an MPI launcher."""
    env = {k: v for k, v in mpi_env.outside_launcher().items()
           if k not in ("PYTHONPATH", "XPNET_BACKEND")}
    env.update(extra)
    return env


def test_the_installed_wheel_trains_from_outside_the_tree(installed, tmp_path):
    python = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = tmp_path / "kernel-cache"
    env = outside_env(XPNET_CACHE_DIR=str(cache), XPNET_BACKEND="numpy")
    info = run([python, "-m", "backends"], cwd=elsewhere, env=env)
    assert "backend: numpy" in info.stdout
    done = run([python, "-c", TRAIN, ROOT], cwd=elsewhere, env=env)
    assert "losses: 3 True" in done.stdout
    if "compiled kernels" in done.stdout:  # a machine with a C compiler: built into the cache
        assert list(cache.glob("xpnet_host-*.so")), done.stdout
    else:
        assert "no C compiler" in done.stdout or "not built" in done.stdout, done.stdout


USER_TESTS = r'''
import numpy as np
from framework.layers import Relu
from framework.testing import check_backward


def test_relu(xp, backend):
    x = backend.asarray(np.array([[-1.0, 0.5], [2.0, -3.0]]))
    check_backward(Relu(), x)
'''


def test_the_installed_pytest_plugin_gives_a_users_tests_their_fixtures(installed, tmp_path):
    """No conftest: the ``backend``/``xp`` fixtures come from the wheel's pytest11 entry
    point, as in a user's own project."""
    (tmp_path / "test_mine.py").write_text(USER_TESTS)
    done = run([installed, "-m", "pytest", "-v", "-p", "no:cacheprovider", "test_mine.py"],
               cwd=tmp_path, env=outside_env())
    assert "test_relu[numpy] PASSED" in done.stdout, done.stdout
    assert "test_relu[array_api_strict] SKIPPED" in done.stdout, done.stdout  # not installed


PARALLEL = r'''
import sys
import numpy as np
from framework import distributed
from framework.trainer import Trainer
from models import TwoLayerNet
rng = np.random.default_rng(0)
x = rng.random((60, 12))
t = rng.integers(0, 3, 60)
net = TwoLayerNet(12, 8, 3, seed=0, dtype="float64")
trainer = Trainer(net, x, t, x[:20], t[:20], epochs=2, mini_batch_size=20, verbose=False, seed=0,
                  optimizer="SGD", optimizer_param={"lr": 0.1})
trainer.train()
world = distributed.world()
with open(f"{sys.argv[1]}.{world.rank}", "w") as f:  # a file a rank: mpiexec mixes their lines
    f.write(repr([world.size, trainer.train_loss_list, trainer.test_acc_list]))
'''


def test_the_installed_extra_trains_data_parallel_under_its_mpiexec(installed, tmp_path):
    """A user's own script with the Trainer, from outside the tree, under the mpiexec
    that the ``distributed`` extra installed: 2 ranks give one process's run."""
    mpiexec = installed.parent / "mpiexec"
    assert mpiexec.exists(), "the distributed extra brought no mpiexec"
    (tmp_path / "mine.py").write_text(PARALLEL)
    env = outside_env(XPNET_BACKEND="numpy")
    run([installed, "mine.py", "one"], cwd=tmp_path, env=env)
    run([mpiexec, "-n", "2", installed, "mine.py", "two"], cwd=tmp_path, env=env, timeout=120)
    size, losses, accuracies = ast.literal_eval((tmp_path / "one.0").read_text())
    assert size == 1 and len(losses) == 6
    for rank in range(2):
        size, got_losses, got_accuracies = ast.literal_eval(
            (tmp_path / f"two.{rank}").read_text())
        assert size == 2 and got_accuracies == accuracies
        np.testing.assert_allclose(got_losses, losses, rtol=1e-12)
