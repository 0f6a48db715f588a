"""scripts/: the chapter's examples print the book's numbers."""

import os
import re
import subprocess
import sys

import pytest

from tests.idx_files import dataset_files, write_files

from tests.conftest import ROOT


def run_script(name, *args, env=None, timeout=300):
    full_env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args],
                       capture_output=True, text=True, env=full_env, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_buy_apple_prints_the_books_figures():
    assert run_script("buy_apple.py") == "price: 220\ndApple: 2.2\ndApple_num: 110\ndTax: 200\n"


def test_buy_apple_orange_prints_the_books_figures():
    assert run_script("buy_apple_orange.py") == (
        "price: 715\ndApple: 2.2\ndApple_num: 110\ndOrange: 3.3\n"
        "dOrange_num: 165\ndTax: 650\n")


@pytest.mark.parametrize("script", ["buy_apple.py", "buy_apple_orange.py", "gradient_check.py",
                                    "show_mnist.py", "train_neuralnet.py"])
def test_scripts_have_help(script):
    assert "usage:" in run_script(script, "--help")


def test_gradient_check_script_on_random_data():
    out = run_script("gradient_check.py", "--data", "random", "--all-backends")
    figures = dict(re.findall(r"^(W1|b1|W2|b2):(\S+)$", out, re.M))
    assert set(figures) == {"W1", "b1", "W2", "b2"}
    for key, value in figures.items():
        assert float(value) < 1e-7, (key, value)


def synthetic_data_env(tmp_path):
    """Environment for a script that should load the tiny synthetic MNIST, offline."""
    write_files(tmp_path / "data" / "mnist", dataset_files()[0])
    return {"XPNET_DATA_DIR": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "XPNET_MNIST_MIRROR": "http://127.0.0.1:9/"}


def test_gradient_check_script_on_dataset_samples(tmp_path):
    out = run_script("gradient_check.py", "--backend", "numpy", env=synthetic_data_env(tmp_path))
    figures = dict(re.findall(r"^(W1|b1|W2|b2):(\S+)$", out, re.M))
    assert set(figures) == {"W1", "b1", "W2", "b2"}
    # Uniform-noise images put a hidden unit within h of ReLU's kink, which
    # costs b1 a few 1e-7 here; the 1e-7 bar is for --data random (above).
    assert all(float(v) < 1e-6 for v in figures.values()), figures


def test_show_mnist_writes_a_png(tmp_path):
    out_png = tmp_path / "grid.png"
    out = run_script("show_mnist.py", "--count", "10", "--out", str(out_png),
                     env=synthetic_data_env(tmp_path))
    assert "first 10 mnist training images" in out
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out_png.stat().st_size > 5000


def test_train_script_end_to_end(tmp_path):
    env = synthetic_data_env(tmp_path)
    png, ckpt = tmp_path / "curves.png", tmp_path / "net.npz"
    out = run_script("train_neuralnet.py", "--backend", "numpy", "--iters", "50",
                     "--batch-size", "10", "--plot", str(png), "--save", str(ckpt), env=env)
    lines = out.strip().splitlines()
    assert lines[0] == "backend: numpy (CPU)"
    assert re.fullmatch(r"final test acc: [01]\.\d{4}", lines[-1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000
    assert ckpt.exists()
    # a finished run resumed does no more steps and reports the same accuracy
    again = run_script("train_neuralnet.py", "--backend", "numpy", "--iters", "50",
                       "--batch-size", "10", "--save", str(ckpt), "--resume", env=env)
    assert "resumed from" in again and again.strip().splitlines()[-1] == lines[-1]


def test_train_script_offline_error(tmp_path):
    env = dict(synthetic_data_env(tmp_path), XPNET_DATA_DIR=str(tmp_path / "empty"))
    full_env = dict(os.environ, PYTHONPATH=ROOT, **env)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train_neuralnet.py"),
                        "--backend", "numpy"], capture_output=True, text=True, env=full_env,
                       timeout=120)
    assert r.returncode == 1
    assert "no usable copy found" in r.stderr and "http://127.0.0.1:9/" in r.stderr
