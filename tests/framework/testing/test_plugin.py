"""framework/testing/plugin.py: the ids, the option, XPNET_BACKEND and the marker, in a user's
own pytest run."""

import os
import subprocess
import sys

import backends
from tests.conftest import ROOT

USER_TEST = '''
import pytest
from framework.testing import check_backward

def test_one(xp, backend):
    assert backend.xp is xp

@pytest.mark.backends("numpy")
def test_numpy_only(xp):
    pass
'''


def run_pytest(tmp_path, *args, env=None):
    (tmp_path / "test_user.py").write_text(USER_TEST)
    full_env = {k: v for k, v in os.environ.items() if k not in ("XPNET_BACKEND", "XPNET_DEVICE")}
    full_env.update(PYTHONPATH=ROOT, **(env or {}))
    r = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "framework.testing",
                        "-p", "no:cacheprovider", *args, str(tmp_path / "test_user.py")],
                       capture_output=True, text=True, cwd=tmp_path, env=full_env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_plugin_ids_option_env_and_marker(tmp_path):
    out = run_pytest(tmp_path)
    assert "test_one[numpy] PASSED" in out
    assert "test_one[cupy] " in out  # skipped without a GPU, run with one
    assert "test_one[torch] " in out and "test_one[array_api_strict] PASSED" in out
    jax_usable = backends.backend_class("jax").usable()[0]  # every backend has its id
    assert f"test_one[jax] {'PASSED' if jax_usable else 'SKIPPED'}" in out
    assert "test_numpy_only[numpy] PASSED" in out and "test_numpy_only[cupy]" not in out
    out = run_pytest(tmp_path, "--xpnet-backend=numpy")
    assert "test_one[numpy] PASSED" in out and "[cupy]" not in out
    out = run_pytest(tmp_path, env={"XPNET_BACKEND": "numpy"})
    assert "test_one[numpy] PASSED" in out and "[cupy]" not in out
    out = run_pytest(tmp_path, "--xpnet-backend=cupy")
    assert "test_one[cupy]" in out and "[numpy]" not in out
    # several, as --xpnet-require takes them: in the registry's order, whatever the option's
    out = run_pytest(tmp_path, "--xpnet-backend=array_api_strict, NumPy")
    assert "test_one[numpy] PASSED" in out and "test_one[array_api_strict] PASSED" in out
    assert out.index("test_one[numpy]") < out.index("test_one[array_api_strict]")
    assert "[cupy]" not in out and "[torch]" not in out
    out = run_pytest(tmp_path, "--xpnet-backend=all")
    assert "test_one[numpy] PASSED" in out and "test_one[cupy]" in out


def test_an_unknown_backend_option_is_argparses_error(tmp_path):
    (tmp_path / "test_user.py").write_text(USER_TEST)
    for value in ("nump", "numpy,nope", ","):
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "framework.testing", "-p",
                            "no:cacheprovider", f"--xpnet-backend={value}",
                            str(tmp_path / "test_user.py")], capture_output=True, text=True,
                           cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
        assert r.returncode == 4, r.stdout + r.stderr  # pytest's usage error
        assert (f"argument --xpnet-backend: expected a backend, comma-separated backends or "
                f"'all' (backends: {', '.join(backends.NAMES)}), got {value!r}") in r.stderr


def test_xpnet_device_in_the_environment_is_the_device_tested(tmp_path):
    """``XPNET_BACKEND=torch XPNET_DEVICE=mps pytest``: the backend fixture runs on that
    device (here array-api-strict's device1, which every machine has)."""
    (tmp_path / "test_device.py").write_text(
        "def test_device(backend):\n"
        "    assert str(backend.device).endswith(\"device1')\"), backend.device\n")
    env = dict(os.environ, PYTHONPATH=ROOT, XPNET_BACKEND="array_api_strict",
               XPNET_DEVICE="device1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "framework.testing", "-p",
                        "no:cacheprovider", str(tmp_path / "test_device.py")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test_device[array_api_strict] PASSED" in r.stdout


def test_a_misspelt_marker_is_an_error_naming_it(tmp_path):
    """``@pytest.mark.backends("nump")`` would otherwise run the test on no backend at all,
    and pass as "nothing to do"."""
    (tmp_path / "test_marker.py").write_text(
        "import pytest\n\n@pytest.mark.backends('nump')\ndef test_x(backend):\n    pass\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "framework.testing", "-p",
                        "no:cacheprovider", str(tmp_path / "test_marker.py")],
                       capture_output=True, text=True, cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr  # a collection error
    assert "@pytest.mark.backends: unknown backend(s) ['nump']; expected some of" in r.stdout


REQUIRED_TEST = '''
import pytest
from framework.testing.plugin import unusable

def test_planted_missing_cupy():
    pytest.skip(unusable("cupy", "planted by the test"))

def test_imports_cupy():
    pytest.importorskip("a_library_nobody_has_" + "cupy")

def test_other_skip():
    pytest.skip("the capture-safe GEMM exists on CuPy only")  # names CuPy, but is no missing backend

def test_backend(backend):
    pass

@pytest.mark.xfail(reason="cupy backend not usable here: an expected failure, planted")
def test_expected_to_fail():
    assert False

def test_imports_a_missing_backend():
    pytest.importorskip(MISSING)
'''


def missing_backend():
    """A backend library that does not import here (CuPy on a machine without it), or None."""
    import importlib.util
    return next((n for n in ("cupy", "torch", "jax") if importlib.util.find_spec(n) is None),
                None)


def run_required(tmp_path, *args):
    (tmp_path / "test_required.py").write_text(f"MISSING = {missing_backend()!r}\n" +
                                               REQUIRED_TEST)
    env = {k: v for k, v in os.environ.items() if k not in ("XPNET_BACKEND", "XPNET_DEVICE")}
    env.update(PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "framework.testing",
                           "-p", "no:cacheprovider", *args, str(tmp_path / "test_required.py")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_required_backend_turns_its_skips_into_failures(tmp_path):
    """``--xpnet-require``: a skip in the wording of ``unusable`` for a required backend,
    and the backend fixture on a required backend that cannot be used here, fail; a skip
    for anything else (or without the option) stays a skip."""
    import backends
    plain = run_required(tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "SKIPPED" in plain.stdout and "FAILED" not in plain.stdout

    r = run_required(tmp_path, "--xpnet-require", "cupy")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert "FAILED test_required.py::test_planted_missing_cupy" in out
    assert "required backend (cupy)" in out and "planted by the test" in out
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert any("the capture-safe GEMM exists on CuPy only" in line for line in skipped), out
    assert any("a_library_nobody_has_cupy" in line for line in skipped), out  # not a backend
    assert "XFAIL test_required.py::test_expected_to_fail" in out  # an xfail stays one
    missing = missing_backend()
    if missing is not None:  # pytest.importorskip's wording names a required backend too
        r = run_required(tmp_path, "--xpnet-require", missing, "-k", "imports_a_missing")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "FAILED test_required.py::test_imports_a_missing_backend" in r.stdout
        assert f"could not import '{missing}'" in r.stdout
    for name in ("numpy", "array_api_strict", "torch", "cupy"):
        usable = name in backends.available()
        if not usable:
            r = run_required(tmp_path, "--xpnet-require", name, "-k", f"test_backend and {name}")
            assert r.returncode == 1, r.stdout + r.stderr
            assert f"{name} backend required (--xpnet-require) but not usable here" in r.stdout

    bad = run_required(tmp_path, "--xpnet-require", "cuda")
    assert bad.returncode != 0 and "unknown backend(s) ['cuda']" in bad.stderr, bad.stderr


HELD_TEST = '''
import importlib.util

import array_api_strict

DEFAULT = array_api_strict.get_array_api_strict_flags()["api_version"]  # before any test

def test_held(backend, xp):
    if backend.name == "array_api_strict":  # the standard's version xpnet keeps to
        assert array_api_strict.get_array_api_strict_flags()["api_version"] == "2024.12"
    # float64 computes as float64, where a switch of the library's holds it back too (JAX)
    assert xp.asarray([1.0], dtype=xp.float64).dtype == xp.float64

def test_after():  # each given back after the test
    assert array_api_strict.get_array_api_strict_flags()["api_version"] == DEFAULT
    if importlib.util.find_spec("jax") is not None:
        import jax
        assert not jax.config.jax_enable_x64
'''


def test_a_users_test_is_held_to_the_standard_and_computes_in_float64(tmp_path):
    """The backend fixture holds array-api-strict to the standard's 2024.12 (its own default
    is newer: a later function would pass unseen) and gives JAX float64 without
    ``JAX_ENABLE_X64`` in the user's environment (a float64 gradient check there computed in
    float32); after the test both are as they were."""
    (tmp_path / "test_held.py").write_text(HELD_TEST)
    env = {k: v for k, v in os.environ.items()
           if k not in ("XPNET_BACKEND", "XPNET_DEVICE", "JAX_ENABLE_X64")}
    env.update(PYTHONPATH=ROOT)
    names = "array_api_strict,jax" if backends.backend_class("jax").usable()[0] \
        else "array_api_strict"
    # JAX's float64-not-available UserWarning an error; pytest 7.0's own about an editable
    # install's import finder ("cannot be rewritten") not
    r = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "framework.testing",
                        "-p", "no:cacheprovider", f"--xpnet-backend={names}", "-W",
                        "error::UserWarning", "-W", "ignore::pytest.PytestAssertRewriteWarning",
                        str(tmp_path / "test_held.py")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in names.split(","):
        assert f"test_held[{name}] PASSED" in r.stdout
    assert "test_after PASSED" in r.stdout
