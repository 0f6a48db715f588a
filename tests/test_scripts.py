"""scripts/: the chapter's examples print the book's numbers."""

import os
import re
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("script", ["buy_apple.py", "buy_apple_orange.py", "gradient_check.py"])
def test_scripts_have_help(script):
    assert "usage:" in run_script(script, "--help")


def test_gradient_check_script_on_random_data():
    out = run_script("gradient_check.py", "--data", "random", "--all-backends")
    figures = dict(re.findall(r"^(W1|b1|W2|b2):(\S+)$", out, re.M))
    assert set(figures) == {"W1", "b1", "W2", "b2"}
    for key, value in figures.items():
        assert float(value) < 1e-7, (key, value)
