"""scripts/gpu_targets.py, measure by measure: a report written here in the check's own
format, each figure placed just inside or just outside its bound, judged by the script
run as the check runs it (a real file, a real process, its exit status)."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "gpu_targets.py")

TRAIN = """backend: cupy (NVIDIA H200)
trained {steps} steps in {seconds} s (17 epoch evaluations included)
GPU memory: {held} MB held by CuPy's pools (training set {data} MB as float32)
final test acc: {acc}
"""

GRADIENT = """# backend numpy (CPU), float64, 0.13 s
W1:{numpy_w1}
b1:1e-12
# largest relative error: {numpy_rel} (W1)
# backend cupy (NVIDIA H200), float64, 0.65 s
W1:1e-12
b1:{cupy_b1}
# largest relative error: {cupy_rel} (b1)
"""

BENCHMARK = """| variant | backend | net | ms/step | vs PyTorch, same device |
|---|---|---|---:|---:|
| xpnet-trainer | cupy | simple | 0.35 | {ratio}x |
"""


def report(sections):
    return "".join(f"## {name}\n\n`a command` -- exit 0 in 1.0 s\n\n```\n{body}```\n\n"
                   for name, body in sections.items())


def target(id, section, measure, **bound):
    return dict(id=id, what=id, section=section, measure=measure, **bound)


TARGETS = {
    "targets": [
        target("time", "train-{dataset}", "seconds", steps=10000, below=1.0, unit="s"),
        target("memory", "train-{dataset}", "memory_over_data", max=512, unit="MB"),
        target("accuracy", "train-{dataset}", "accuracy_gap", model="two-layer", max=0.005),
        target("gradient", "gradient_check", "largest_relative_error", max=1e-6),
        target("float32", "gradient_check-float32", "largest_mean_abs_difference", max=1e-6),
        dict(id="vs-torch", what="vs-torch", measure="vs_torch", min=2.0, unit="x",
             table_row={"variant": "xpnet-trainer", "backend": "cupy", "net": "simple"}),
    ],
    "cpu_accuracy": {"fashion-mnist": {"two-layer": {"value": 0.8757, "source": "a CPU run"}}},
}


def judge(tmp_path, train=None, gradient=None, ratio="2.00"):
    """The script's verdict on a report whose figures are ``train`` and ``gradient``'s:
    ``(exit status, {target id: its table row})``."""
    train = dict(dict(steps=10000, seconds="0.99", held="612.0", data="100.0", acc="0.8750"),
                 **(train or {}))
    gradient = dict(dict(numpy_w1="1e-12", numpy_rel="3e-07", cupy_b1="1e-12",
                         cupy_rel="4e-07"), **(gradient or {}))
    text = report({"train-fashion-mnist": TRAIN.format(**train),
                   "gradient_check": GRADIENT.format(**gradient),
                   "gradient_check-float32": GRADIENT.format(**gradient),
                   "benchmark": BENCHMARK.format(ratio=ratio)})
    (tmp_path / "report.md").write_text(text)
    (tmp_path / "targets.json").write_text(json.dumps(TARGETS))
    done = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "report.md"), "--targets",
                           str(tmp_path / "targets.json")], capture_output=True, text=True,
                          timeout=60)
    rows = {line.split(" | ")[0].lstrip("| ").split(" (")[0]: line
            for line in done.stdout.splitlines() if line.startswith("| ") and " | " in line}
    return done.returncode, rows, done.stdout


def result(row):
    return row.split(" | ")[3]


def test_every_target_met_passes(tmp_path):
    status, rows, out = judge(tmp_path)
    assert status == 0 and out.startswith("targets: 6 met, 0 missed\n"), out
    assert "trained" not in rows["time"] and "| 0.99 s | < 1 s | met |" in rows["time"]
    assert "| 512 MB | <= 512 MB | met |" in rows["memory"]  # 612 held less 100 of data


def test_a_strict_bound_is_missed_at_the_bound_itself(tmp_path):
    status, rows, out = judge(tmp_path, train={"seconds": "1.00"})
    assert status == 1 and result(rows["time"]) == "MISSED", out
    status, rows, _ = judge(tmp_path, train={"held": "612.1"})  # over "max" by a little
    assert result(rows["memory"]) == "MISSED"


def test_a_run_of_another_length_is_not_measured(tmp_path):
    status, rows, _ = judge(tmp_path, train={"steps": 9000, "seconds": "0.5"})
    assert status == 1 and result(rows["time"]) == "MISSED (not measured)"
    assert "trained 9000 steps; the target is for 10000" in rows["time"]


def test_the_accuracy_gap_counts_either_way(tmp_path):
    for acc in ("0.8700", "0.8814"):  # 0.0057 below the CPU's, then 0.0057 above
        status, rows, out = judge(tmp_path, train={"acc": acc})
        assert status == 1 and result(rows["accuracy"]) == "MISSED", out
        assert f"acc {acc}, CPU 0.8757 (a CPU run)" in rows["accuracy"]


def test_the_gradient_checks_take_the_worst_backend_and_parameter(tmp_path):
    status, rows, out = judge(tmp_path, gradient={"cupy_rel": "5e-06", "cupy_b1": "3e-06"})
    assert status == 1, out
    assert "| 5e-06 |" in rows["gradient"] and "worst: cupy, of 2 backends" in rows["gradient"]
    assert "| 3e-06 |" in rows["float32"] and "worst: cupy b1, of 2 backends" in rows["float32"]
    # the worst one first in the report: still the one judged
    status, rows, out = judge(tmp_path, gradient={"numpy_rel": "5e-06", "numpy_w1": "3e-06"})
    assert "worst: numpy, of 2" in rows["gradient"] and result(rows["gradient"]) == "MISSED"
    assert "worst: numpy W1, of 2" in rows["float32"] and result(rows["float32"]) == "MISSED"


def test_a_ratio_below_its_minimum_and_an_unmeasured_target_fail(tmp_path):
    status, rows, out = judge(tmp_path, ratio="1.99")
    assert status == 1 and result(rows["vs-torch"]) == "MISSED", out
    status, rows, out = judge(tmp_path, ratio="-")  # the row is there, its ratio is not
    assert status == 1 and result(rows["vs-torch"]) == "MISSED (not measured)", out
    assert out.startswith("targets: 5 met, 1 missed\n")


def test_a_report_or_targets_file_that_cannot_be_read_is_one_line(tmp_path):
    """A mistyped report path ended in a traceback."""
    (tmp_path / "targets.json").write_text("{not json")
    for args, message in (
            ([str(tmp_path / "missing.md")],
             f"cannot read the report {tmp_path / 'missing.md'}: No such file or directory"),
            ([str(tmp_path)], f"cannot read the report {tmp_path}: Is a directory"),
            ([str(tmp_path / "targets.json"), "--targets", str(tmp_path / "targets.json")],
             f"the targets file {tmp_path / 'targets.json'} is not JSON")):
        done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"gpu_targets.py: error: {message}" in done.stderr
        assert "Traceback" not in done.stderr
