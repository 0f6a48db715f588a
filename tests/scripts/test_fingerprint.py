"""scripts/fingerprint.py: the same hashes on every run of the same tree, one line per
result, and what it refuses before it starts."""

import os
import re
import subprocess
import sys

from tests.conftest import ROOT, child_env


def fingerprint(*args, cwd=ROOT):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "fingerprint.py"),
                           *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=child_env())


def test_two_runs_print_the_same_hash_for_every_result(tmp_path):
    first = fingerprint("--backends", "numpy", "--out", str(tmp_path / "a.txt"))
    second = fingerprint("--backends", "numpy")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    lines = first.stdout.splitlines()
    assert first.stdout == second.stdout == (tmp_path / "a.txt").read_text()
    assert len(lines) > 40 and all(re.fullmatch(r"numpy( \S+)+ [0-9a-f]{24}", line)
                                   for line in lines), lines[:3]
    names = [line.rsplit(" ", 1)[0] for line in lines]
    assert len(set(names)) == len(names)  # one line a result


def test_a_backend_or_an_output_it_cannot_use_is_refused_first(tmp_path):
    for args, message in ((["--backends", "numpy,nope"], "--backends: "),
                          (["--backends", "numpy", "--out", str(tmp_path)],
                           f"--out {tmp_path}: a folder")):
        done = fingerprint(*args)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert f"fingerprint.py: error: {message}" in done.stderr
