"""framework/testing/plugin.py: the ids, the option, XPNET_BACKEND and the marker, in a user's
own pytest run."""

import os
import subprocess
import sys

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
    assert "test_numpy_only[numpy] PASSED" in out and "test_numpy_only[cupy]" not in out
    out = run_pytest(tmp_path, "--xpnet-backend=numpy")
    assert "test_one[numpy] PASSED" in out and "[cupy]" not in out
    out = run_pytest(tmp_path, env={"XPNET_BACKEND": "numpy"})
    assert "test_one[numpy] PASSED" in out and "[cupy]" not in out
    out = run_pytest(tmp_path, "--xpnet-backend=cupy")
    assert "test_one[cupy]" in out and "[numpy]" not in out
