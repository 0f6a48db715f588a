"""The suite's own time limit (tests/conftest.py, ``--test-time-limit``): a test that hangs
ends the run with its traceback, in a real pytest process, or fails alone under
pytest-xdist's workers, as ``make test`` runs the suite."""

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, child_env

HANGS = '''
import threading
import time


def test_passes():
    pass


def test_waits_for_a_lock_nobody_releases():
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()  # a deadlock, as a pool or a collective would make


def test_never_reached():
    pass
'''


def run_pytest(tmp_path, *options):
    (tmp_path / "test_hangs.py").write_text(HANGS)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest",
                           "-p", "no:cacheprovider", "-q", str(tmp_path / "test_hangs.py"),
                           *options], cwd=ROOT, env=child_env(), capture_output=True,
                          text=True, timeout=120)


def test_a_hanging_test_ends_the_run_with_its_traceback(tmp_path):
    r = run_pytest(tmp_path, "--test-time-limit", "2")
    assert r.returncode == 1
    assert "Timeout (0:00:02)!" in r.stderr
    assert 'test_hangs.py", line 13 in test_waits_for_a_lock_nobody_releases' in r.stderr
    assert "test_never_reached" not in r.stderr + r.stdout


def test_under_workers_the_hanging_test_fails_with_its_traceback_and_the_rest_run(tmp_path):
    pytest.importorskip("xdist", reason="pytest-xdist (the test extra) runs make test's workers")
    r = run_pytest(tmp_path, "--test-time-limit", "2", "-n", "2")
    assert r.returncode == 1
    assert "Timeout (0:00:02)!" in r.stderr
    assert 'test_hangs.py", line 13 in test_waits_for_a_lock_nobody_releases' in r.stderr
    # (the test's id as xdist prints it: relative to the rootdir pytest chose, which depends
    # on where tmp_path lies)
    assert re.search(r"crashed while running '(\S*/)?test_hangs\.py::"
                     r"test_waits_for_a_lock_nobody_releases'", r.stdout), r.stdout
    assert "1 failed, 2 passed" in r.stdout, r.stdout


def test_the_limit_leaves_a_test_within_it_alone(tmp_path):
    (tmp_path / "test_quick.py").write_text("import time\n\n\ndef test_sleeps():\n"
                                            "    time.sleep(1)\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p",
                        "no:cacheprovider", "-q", str(tmp_path / "test_quick.py"),
                        "--test-time-limit", "3"], cwd=ROOT, env=child_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
    assert "Timeout" not in r.stderr
