"""scripts/gpu_check.sh fails when anything fails or a target is missed: dry runs of it on
the CPU with a section forced to fail, a target forced to miss and a budget too small;
scripts/gpu_targets.py measured on a committed H200 report; scripts/tree_stamp.py on a
real repository and on a copy of it without .git."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")
GRADIENT = {"id": "gradient-float64", "what": "gradient check in float64",
            "section": "gradient_check", "measure": "largest_relative_error",
            "max": 1e-6, "dry": 1e-6}


def dry_run(tmp_path, targets, sections="device,gradient_check", **env):
    """A dry run of ``sections`` (by default two: device, and gradient_check on random
    inputs), as CI can."""
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"targets": targets}))
    full = {k: v for k, v in os.environ.items() if not k.startswith(("XPNET_", "GPU_CHECK_"))}
    full.update(PYTHON=sys.executable, OUT=str(tmp_path / "out"),
                GPU_CHECK_SECTIONS=sections, GPU_CHECK_TARGETS=str(path), **env)
    done = subprocess.run(["bash", SCRIPT, "--cpu-dry-run", str(tmp_path / "no-data")],
                          capture_output=True, text=True, env=full, timeout=300)
    report = (tmp_path / "out" / "gpu-report.md").read_text()
    return done, report


def verdict(report):
    return report.splitlines()[2]


def test_a_dry_run_that_meets_its_targets_passes(tmp_path):
    done, report = dry_run(tmp_path, [GRADIENT])
    assert done.returncode == 0, done.stdout + done.stderr
    assert verdict(report) == "**PASSED**: all 2 sections passed; targets: 1 met, 0 missed"
    assert "| device | 0 |" in report and "| gradient_check | 0 |" in report
    assert "- commit: " in report and ("clean" in report or "dirty" in report)


def test_a_failed_section_and_a_missed_target_fail_the_check_and_head_the_report(tmp_path):
    impossible = dict(GRADIENT, id="impossible", what="a bound no float64 check meets",
                      dry=1e-30)
    done, report = dry_run(tmp_path, [GRADIENT, impossible], GPU_CHECK_FAIL="device")
    assert done.returncode != 0
    assert verdict(report) == ("**FAILED**: failed: device; targets: 1 met, 1 missed"), report
    assert "| device | 3 | " in report and "FAILED: exit 3" in report
    assert "forced to fail by GPU_CHECK_FAIL" in report
    assert "| a bound no float64 check meets | " in report and "| MISSED |" in report


def test_a_target_that_cannot_be_measured_is_missed(tmp_path):
    elsewhere = dict(GRADIENT, id="elsewhere", section="a-section-that-never-ran")
    done, report = dry_run(tmp_path, [elsewhere], sections="device")  # nothing to measure
    assert done.returncode != 0
    assert verdict(report).endswith("targets: 0 met, 1 missed")
    assert "MISSED (not measured)" in report and "the section did not run" in report


def test_sections_dropped_for_time_fail_the_check(tmp_path):
    done, report = dry_run(tmp_path, [GRADIENT], GPU_CHECK_BUDGET="5")
    assert done.returncode != 0
    assert "not run for time: device gradient_check" in verdict(report), report
    assert "NOT RUN: the budget of 5 s was spent" in report


def test_the_targets_of_a_committed_h200_report(tmp_path):
    """The 2fd554a run (docs/gpu/) against today's targets: what it met and missed."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_targets.py"),
                           os.path.join(ROOT, "docs", "gpu", "report-2fd554a.md"), "--tables",
                           os.path.join(ROOT, "docs", "gpu", "benchmark-2fd554a.md")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert out.startswith("targets: 8 met, 10 missed\n"), out
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines()
            if line.startswith("| ")}
    graph = rows["TwoLayerNet, the book's 10,000 steps, default step (CUDA graph) (fashion-mnist)"]
    assert "| 1.01 s | < 1 s | MISSED |" in graph
    assert "| 2.04x | >= 2x | met |" in rows["SimpleConvNet's step against PyTorch eager, "
                                            "same card (benchmark)"]
    assert "| 566.3 MB | <= 512 MB | MISSED |" in rows[
        "DeepConvNet's run: GPU memory held by CuPy's pools over the data (fashion-mnist)"]
    assert "acc 0.9184, CPU 0.9207" in rows[
        "DeepConvNet's final test accuracy against the CPU run's (fashion-mnist)"]
    assert "MISSED (not measured)" in rows[  # no torch-wing section in that run
        "DeepConvNet on PyTorch's CUDA tensors, the Trainer's step (graph='auto') against "
        "PyTorch's own nn step (torch_wing)"]
    assert "MISSED (not measured)" in rows[  # nor a jax section
        "DeepConvNet on JAX's GPU arrays, the Trainer's compiled step against the same network "
        "in plain JAX (jax.grad, jax.jit), same card (jax_step; our target, not the issue's: "
        "xpnet's step at JAX's speed)"]
    assert "MISSED (not measured)" in rows[  # the float32 check was not in that run
        "gradient check of the float32 backprop (against float64 central differences), every "
        "backend: largest of the book's per-parameter errors"]


@pytest.mark.skipif(shutil.which("git") is None, reason="no git here")
def test_the_tree_stamp_says_clean_or_dirty_from_git_and_without_it(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "scripts", "tree_stamp.py"), repo / "scripts")
    (repo / "code.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("/.gpu-stamp.json\n/data/\n")
    (repo / "data").mkdir()
    (repo / "data" / "big.bin").write_bytes(b"\0" * 100)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "one"]):
        subprocess.run(git + args, check=True, capture_output=True)

    def describe(where):
        done = subprocess.run([sys.executable, str(where / "scripts" / "tree_stamp.py"),
                               "describe"], capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout

    rc, line = describe(repo)
    assert rc == 0 and "(clean; from git)" in line, line
    subprocess.run([sys.executable, str(repo / "scripts" / "tree_stamp.py"), "write"],
                   check=True, capture_output=True)
    copy = tmp_path / "copy"  # what the GPU machine gets: the tree, the stamp, no .git
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    rc, line = describe(copy)
    assert rc == 0 and "clean; no .git here" in line, line
    (copy / "code.py").write_text("x = 2\n")
    (copy / "new.py").write_text("")
    rc, line = describe(copy)
    assert rc == 1 and "code.py changed" in line and "new.py added" in line, line
    os.remove(copy / ".gpu-stamp.json")
    rc, line = describe(copy)
    assert rc == 2 and line.startswith("unknown (no .git here"), line
    (repo / "code.py").write_text("x = 3\n")
    rc, line = describe(repo)
    assert rc == 1 and "dirty: 1 paths: code.py" in line, line
    # a stamp written from a dirty tree: its copy is dirty however exactly it matches
    subprocess.run([sys.executable, str(repo / "scripts" / "tree_stamp.py"), "write"],
                   check=True, capture_output=True)
    shutil.rmtree(copy)
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    rc, line = describe(copy)
    assert rc == 1 and "1 uncommitted changes when the stamp was written" in line, line
    os.remove(copy / "code.py")
    rc, line = describe(copy)
    assert rc == 1 and "code.py missing" in line, line


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "gpu_check.sh: unknown option --bogus"),
    (["--cpu-dry-run", "--budget", "5"], "gpu_check.sh: unknown option --budget"),
    (["a", "b"], "gpu_check.sh: one DATA_DIR at most, got: a b")])
def test_an_unknown_option_or_a_second_folder_is_refused_before_anything_runs(tmp_path, args,
                                                                             message):
    """``--bogus`` was taken for DATA_DIR and the whole check ran (on a GPU machine: its
    device time) with no data."""
    done = subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OUT=str(tmp_path / "out")))
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == message
    assert "usage: bash scripts/gpu_check.sh [--cpu-dry-run] [DATA_DIR]" in done.stderr
    assert not (tmp_path / "out").exists()


def test_help_prints_what_the_check_runs():
    done = subprocess.run(["bash", SCRIPT, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("The GPU check: one prepared call on a machine with an NVIDIA")
    assert "--cpu-dry-run runs the same sections on NumPy" in done.stdout
    assert "set -u" not in done.stdout
