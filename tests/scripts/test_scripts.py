"""scripts/: the chapter's examples print the book's numbers."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import backends
from tests.framework.idx_files import dataset_files, write_files

from tests.conftest import ROOT, child_env, sigint_as_at_a_terminal, to_host


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


EXPERIMENTS = {  # chapter 6's figures, each with tiny settings
    "optimizer_compare.py": ["--iters", "20", "--batch-size", "10"],
    "weight_init_compare.py": ["--iters", "20", "--batch-size", "10", "--histograms"],
    "batch_norm_test.py": ["--epochs", "2", "--scales", "3"],
    "overfit.py": ["--epochs", "3", "--dropout", "0.2", "--weight-decay", "0.1"],
    "hyperparameter_search.py": ["--trials", "3", "--epochs", "2", "--top", "2"],
}


@pytest.mark.parametrize("script", ["buy_apple.py", "buy_apple_orange.py", "gradient_check.py",
                                    "show_mnist.py", "train_neuralnet.py", "train_convnet.py",
                                    "visualize_filter.py", *EXPERIMENTS])
def test_scripts_have_help(script):
    """Each script answers ``--help`` run as a file, as the docs show, and as a module from
    the tree's root (``python -m scripts.train_neuralnet``), as ``scripts.benchmark`` is run."""
    assert "usage:" in run_script(script, "--help")
    r = subprocess.run([sys.executable, "-m", "scripts." + script[:-len(".py")], "--help"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr


def test_gradient_check_script_on_random_data():
    """Every backend here is checked in float64: JAX too, in its float64 switch for the
    check alone (it printed "not checked" unless JAX_ENABLE_X64 was set)."""
    out = run_script("gradient_check.py", "--data", "random", "--all-backends")
    checked = re.findall(r"^# backend (\S+) \(.*\), float64, ", out, re.M)
    assert checked == list(backends.available()), out
    assert "not checked" not in out
    figures = re.findall(r"^(W1|b1|W2|b2):(\S+)$", out, re.M)
    assert [key for key, _ in figures] == ["W1", "b1", "W2", "b2"] * len(checked)
    for key, value in figures:
        assert float(value) < 1e-7, (key, value)


def synthetic_data_env(tmp_path):
    """Environment for a script that should load the tiny synthetic MNIST, offline."""
    write_files(tmp_path / "data" / "mnist", dataset_files()[0])
    return {"XPNET_DATA_DIR": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "XPNET_MNIST_MIRROR": "http://127.0.0.1:9/"}


def test_gradient_check_script_names_its_largest_error_and_refuses_a_device_without_float64(
        capsys):
    """The last line names the parameter of the largest relative error; a device without
    float64 is refused where it was asked for (exit 2, one line), named and passed over
    where every backend is checked; a rank past the first of an MPI job checks nothing."""
    from scripts.gradient_check import check, random_batch
    x, t = random_batch(0)
    result = check("numpy", x, t, 0, "float64")
    worst = max(result, key=lambda k: result[k][1])
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"# largest relative error: {result[worst][1]:.3g} ({worst})")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gradient_check.py"),
                        "--data", "random", "--backend", "array_api_strict", "--device",
                        "no_float64"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "has no float64" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gradient_check.py"),
                        "--data", "random"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT, PMI_SIZE="2", PMI_RANK="1"))
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


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
    # the suffix picks the format (scripts.training.save_figure, which every script's
    # figure goes through): a PNG was written under any name
    out_svg = tmp_path / "grid.svg"
    run_script("show_mnist.py", "--count", "2", "--out", str(out_svg),
               env=synthetic_data_env(tmp_path))
    assert b"<svg" in out_svg.read_bytes()[:1000]


@pytest.mark.parametrize("args, status, message", [
    (["--count", "0"], 2, "argument --count: expected a whole number from 1 to 256, got '0'"),
    (["--count", "100000"], 2, "expected a whole number from 1 to 256, got '100000'"),
], ids=["no-images", "a-grid-too-tall"])
def test_show_mnist_refuses_in_one_line(tmp_path, args, status, message):
    """A count of 0 was matplotlib's traceback, one of 100,000 an endless run."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "show_mnist.py"), *args],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=ROOT, **synthetic_data_env(tmp_path)))
    assert r.returncode == status and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


WRITERS = {  # each script that writes a figure, with its option and tiny settings
    "train_neuralnet.py": ["--backend", "numpy", "--iters", "2", "--quiet", "--plot"],
    "optimizer_compare.py": ["--iters", "2", "--batch-size", "10", "--out"],
    "visualize_filter.py": ["--backend", "numpy", "--epochs", "1", "--out"],
    "show_mnist.py": ["--count", "2", "--out"],
}


@pytest.mark.parametrize("script", WRITERS)
def test_a_figure_that_cannot_be_written_is_said_in_one_line(tmp_path, script):
    """A folder in the figure's place is refused before the run (--plot's was a traceback
    after a whole training run); a write that fails (a name too long for the file system)
    is one line too. The suffix picks the format (a PNG was written under any name), and
    one matplotlib cannot write is refused before the run."""
    (tmp_path / "figures").mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT, **synthetic_data_env(tmp_path))
    option = WRITERS[script][-1]
    for path, status, message in (
            (tmp_path / "figures", 2, f"error: {option} {tmp_path / 'figures'}: is a folder; "
                                      f"expected a file's name"),
            (tmp_path / ("x" * 300 + ".png"), 1, "error: cannot write "),
            (tmp_path / "figures" / "no.txt", 2, f"error: {option} {tmp_path / 'figures'}/no.txt: "
                                                  f"matplotlib writes no .txt figures; the "
                                                  f"suffix picks the format: "),
            (tmp_path / "figures" / "ok.png", 0, "")):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script),
                            *WRITERS[script], str(path)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == status and message in r.stderr, (path, r.stderr)
        assert "Traceback" not in r.stderr
        assert ("training" not in r.stdout and "figure" not in r.stdout) if status == 2 else True
    assert os.listdir(tmp_path / "figures") == ["ok.png"]
    assert (tmp_path / "figures" / "ok.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("script", ["optimizer_compare.py", "visualize_filter.py",
                                    "gradient_check.py", "train_convnet.py"])
def test_a_negative_seed_is_refused_in_one_line(tmp_path, script):
    """Six scripts ended in NumPy's traceback for --seed -1."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--seed", "-1"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT, **synthetic_data_env(tmp_path)))
    assert r.returncode == 2, r.stderr
    assert "argument --seed: expected a non-negative integer, got '-1'" in r.stderr
    assert "Traceback" not in r.stderr


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


def test_resume_without_a_checkpoint_yet_says_it_starts_a_new_run(tmp_path):
    """A job's first run with --resume, or a typo in --save, started afresh without a word."""
    ckpt = tmp_path / "run.npz"
    out = run_script("train_neuralnet.py", "--backend", "numpy", "--iters", "4",
                     "--batch-size", "10", "--save", str(ckpt), "--resume",
                     env=synthetic_data_env(tmp_path))
    assert f"note: {ckpt} does not exist yet: --resume starts a new run, which writes it" in out
    assert "resumed from" not in out and ckpt.exists()


def test_train_script_offline_error(tmp_path):
    env = dict(synthetic_data_env(tmp_path), XPNET_DATA_DIR=str(tmp_path / "empty"))
    full_env = dict(os.environ, PYTHONPATH=ROOT, **env)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train_neuralnet.py"),
                        "--backend", "numpy"], capture_output=True, text=True, env=full_env,
                       timeout=120)
    assert r.returncode == 1
    assert "no usable copy found" in r.stderr and "http://127.0.0.1:9/" in r.stderr


def is_png(path, min_size=10000):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > min_size


@pytest.mark.parametrize("script", EXPERIMENTS)
def test_chapter_6_experiments_print_numbers_and_draw(tmp_path, script):
    png = tmp_path / "figure.png"
    out = run_script(script, "--backend", "numpy", "--out", str(png), *EXPERIMENTS[script],
                     env=synthetic_data_env(tmp_path))
    assert out.startswith("backend: numpy (CPU); data: mnist, 30 train / 20 test")
    assert f"figure: {png}" in out and is_png(png)
    assert re.search(r"\d\.\d{4}", out)  # it prints its numbers
    if script == "weight_init_compare.py":
        assert is_png(tmp_path / "figure-histograms.png")
        assert out.count("histogram ") == 6
    if script == "optimizer_compare.py":
        # 20 steps: each mean is over those 20, and the header says so (it said 100)
        assert "mean loss of the 20 steps up to step" in out, out
        for name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"):
            assert re.search(rf"^  {name} +\d", out, re.M), name


def test_the_experiments_loop_runs_on_every_backend(xp):
    """Chapter 6's comparison loop (optimizer_compare, weight_init_compare) wrote each
    step's loss into one array, which JAX's arrays refuse ("JAX arrays are immutable"):
    both scripts failed on ``--backend jax``. Every backend now draws NumPy's losses."""
    from framework.optimizers import Momentum
    from models import TwoLayerNet
    from scripts.experiment import batches_of, train_losses
    rng = np.random.default_rng(0)
    x, t = rng.random((40, 12)), rng.integers(0, 3, 40)

    def losses(name, device=None):
        with backends.using(name, device) as backend:
            net = TwoLayerNet(12, 7, 3, seed=1, weight_init_std=0.5)
            return train_losses(net, Momentum(lr=0.1), batches_of(x, t, 10, backend), 12,
                                seed=3)
    here = losses(backends.current().name, backends.current().device)
    assert len(here) == 12 and all(isinstance(v, float) for v in here)
    assert here == pytest.approx(losses("numpy"), rel=1e-5)


def test_the_scripts_train_dropout_on_jax_without_jax_enable_x64(tmp_path):
    """DeepConvNet and ``--dropout`` were refused on ``--backend jax`` unless
    ``JAX_ENABLE_X64=1`` was typed (dropout's generator kept its key in uint64). The
    scripts switch it on for their own process unless the user set it, and where the
    user's ``JAX_ENABLE_X64=0`` stands the generator runs in 32-bit words: the same masks,
    so the same accuracies, epoch by epoch; the network stays float32 either way."""
    pytest.importorskip("jax")
    env = child_env(**synthetic_data_env(tmp_path))
    env.pop("JAX_ENABLE_X64", None)
    printed = {}
    for x64 in (None, "0"):
        if x64 is not None:
            env["JAX_ENABLE_X64"] = x64  # the user's word stands
        done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "overfit.py"),
                               "--backend", "jax", "--epochs", "2", "--dropout", "0.2",
                               "--out", str(tmp_path / "f.png")],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        printed[x64] = [line for line in done.stdout.splitlines() if "train acc" in line]
        assert len(printed[x64]) == 2, done.stdout
    assert printed["0"] == printed[None]


@pytest.mark.parametrize("script, size, message", [
    ("overfit.py", "31", "--train-size 31 is more than the 30 training samples the dataset has"),
    ("batch_norm_test.py", "100",
     "--train-size 100 is more than the 30 training samples the dataset has"),
    ("hyperparameter_search.py", "31",
     "--train-size 31 is more than the 30 training samples the dataset has"),
    ("hyperparameter_search.py", "1", "--train-size must be at least 2, got 1")])
def test_a_train_size_the_data_cannot_give_is_refused_in_one_line(tmp_path, script, size,
                                                                  message):
    """overfit printed "100000 training samples" while it trained on 60000, and the search
    ended in a traceback with one sample (all of it held out for validation)."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--backend",
                        "numpy", "--train-size", size, "--out", str(tmp_path / "f.png")],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT, **synthetic_data_env(tmp_path)))
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"error: {message}\n"
    assert not (tmp_path / "f.png").exists()


def test_a_data_dir_that_does_not_hold_the_data_is_said(tmp_path):
    """A typo in --data-dir read another copy (here XPNET_DATA_DIR's) without a word."""
    env = synthetic_data_env(tmp_path)
    args = ["--backend", "numpy", "--iters", "2", "--batch-size", "10", "--quiet"]
    typo = tmp_path / "dtaa"
    out = run_script("train_neuralnet.py", *args, "--data-dir", str(typo), env=env)
    assert (f"note: --data-dir did not hold mnist ({typo / 'mnist'} (data_dir argument): does "
            f"not exist; {typo} (data_dir argument): does not exist); read from "
            f"{tmp_path / 'data' / 'mnist'} (XPNET_DATA_DIR)\n") in out
    right = run_script("train_neuralnet.py", *args, "--data-dir", str(tmp_path / "data"), env=env)
    plain = run_script("train_neuralnet.py", *args, env=env)
    assert "note:" not in right and "note:" not in plain
    # both wrong, the data in the cache: the note names the places --data-dir named alone
    write_files(tmp_path / "cache" / "xpnet" / "mnist", dataset_files()[0])
    out = run_script("train_neuralnet.py", *args, "--data-dir", str(typo),
                     env=dict(env, XPNET_DATA_DIR=str(tmp_path / "nope")))
    assert f"note: --data-dir did not hold mnist ({typo / 'mnist'} (data_dir argument)" in out
    assert "nope" not in out and "(cache)\n" in out


def stderr_on_a_terminal(args, env, timeout=120):
    """Run ``args`` with stderr on a pseudo-terminal, as in a shell: (status, what it
    wrote there)."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=child, env=env)
        os.close(child)
        child = None
        written, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the child's end closed (Linux's EIO)
                    break
                if not chunk:
                    break
                written += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=max(1, deadline - time.monotonic())), written.decode()
    finally:
        os.close(main)
        if child is not None:
            os.close(child)


def test_the_progress_bar_is_drawn_on_a_terminal_alone(tmp_path):
    """The bar is drawn where stderr is a terminal; where it is a file or a pipe (``nohup``,
    a batch job's log) tqdm rewrote its line there twice a second, thousands of lines an
    hour, and now draws none: the epoch lines say the same on stdout. ``--quiet`` hides
    both, and the summary counts the evaluations."""
    env = dict(os.environ, PYTHONPATH=ROOT, **synthetic_data_env(tmp_path))
    args = [sys.executable, os.path.join(ROOT, "scripts", "train_neuralnet.py"), "--backend",
            "numpy", "--iters", "2", "--batch-size", "10"]
    status, terminal = stderr_on_a_terminal(args, env)
    assert status == 0, terminal
    assert "train: 100%" in terminal and "2/2" in terminal
    logged = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    quiet = subprocess.run([*args, "--quiet"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert logged.returncode == quiet.returncode == 0, logged.stderr + quiet.stderr
    assert logged.stderr == "" and quiet.stderr == ""
    assert re.search(r"^epoch 1/1  loss \d\.\d{4}  train acc", logged.stdout, re.M)
    assert "epoch 1/1" not in quiet.stdout
    assert "trained 2 steps in " in quiet.stdout and "(1 epoch evaluation included)" in quiet.stdout


def test_the_resume_command_names_resume_once_and_this_python(tmp_path, monkeypatch):
    """Interrupting a resumed run printed ``... --resume --resume``; and ``python`` where
    the run was ``.venv/bin/python ...`` (``make train``'s) named the shell's Python, which
    may not have xpnet at all."""
    from scripts.training import interpreter, resume_command
    monkeypatch.setattr(sys, "argv", ["scripts/train_convnet.py", "--save", "a b.npz",
                                      "--resume", "--iters", "9"])
    (tmp_path / "bin").mkdir()
    os.symlink(sys.executable, tmp_path / "bin" / "python")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # this Python is the shell's
    assert interpreter() == "python"
    assert resume_command() == ("python scripts/train_convnet.py --save 'a b.npz' --iters 9 "
                                "--resume")
    assert resume_command(3).startswith("mpiexec -n 3 python scripts/train_convnet.py ")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # another one, or none, is
    monkeypatch.chdir(tmp_path)
    assert interpreter() == sys.executable  # outside the folder: its whole path
    venv_home = os.path.dirname(os.path.dirname(os.path.dirname(sys.executable)))
    monkeypatch.chdir(venv_home)  # the folder holding the venv, as make train runs
    assert interpreter() == os.path.relpath(sys.executable)  # .venv/bin/python
    assert resume_command().startswith(f"{os.path.relpath(sys.executable)} scripts/")


def test_train_script_trains_a_deep_net_and_resumes(tmp_path):
    env = synthetic_data_env(tmp_path)
    ckpt = tmp_path / "deep.npz"
    args = ["--backend", "numpy", "--model", "multi-layer", "--hidden", "20,20", "--batchnorm",
            "--dropout", "0.1", "--weight-decay", "0.001", "--init", "he", "--iters", "9",
            "--batch-size", "10", "--save", str(ckpt), "--quiet"]
    out = run_script("train_neuralnet.py", *args, env=env)
    assert "network: MultiLayerNetExtend(input_size=784, hidden_size_list=[20, 20]" in out
    assert "use_batchnorm=True" in out and "dropout_ration=0.1" in out
    again = run_script("train_neuralnet.py", *args, "--resume", env=env)
    assert "resumed from" in again
    assert "nothing to train: the run is at step 9 and --iters/--epochs end it at step 9" in again
    assert "step:" not in again  # no step ran, so none is named
    assert again.strip().splitlines()[-1] == out.strip().splitlines()[-1]
    # the checkpoint brings the run's rate (0.1); a rate given on the command line wins, said so
    more = run_script("train_neuralnet.py", *args, "--resume", "--iters", "12", "--lr", "0.05",
                      env=env)
    assert "learning rate: 0.05 (--lr), where the run stood at 0.1\n" in more
    assert "trained 3 steps" in more
    from framework import checkpoint  # and the run went on at that rate, which it keeps
    assert checkpoint.header(str(ckpt))["trainer"]["optimizer_settings"]["lr"] == 0.05


def test_drop_last_on_the_command_line(tmp_path):
    """30 samples in batches of 7: four full steps an epoch and a fifth of two samples,
    which --drop-last leaves out; a resume that would draw otherwise is refused."""
    env = synthetic_data_env(tmp_path)
    ckpt = tmp_path / "run.npz"
    args = ["--backend", "numpy", "--model", "multi-layer", "--hidden", "20", "--batchnorm",
            "--epochs", "1", "--batch-size", "7", "--quiet", "--save", str(ckpt)]
    assert "trained 5 steps" in run_script("train_neuralnet.py", *args, env=env)
    ckpt.unlink()
    assert "trained 4 steps" in run_script("train_neuralnet.py", *args, "--drop-last", env=env)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train_neuralnet.py"),
                        *args, "--resume", "--epochs", "2"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT, **env), timeout=120)
    assert r.returncode == 1 and "(drop_last True -> False)" in r.stderr, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--batchnorm"], "--batchnorm: only with --model multi-layer"),
    (["--hidden", "50,50"], "two-layer has one hidden layer"),
    (["--model", "multi-layer", "--hidden", "100,0"], "hidden_size_list[1] must be at least 1"),
    (["--model", "multi-layer", "--dropout", "1.5"],  # said after the data was loaded
     "argument --dropout: expected a ratio in [0, 1), got '1.5'"),
    (["--model", "multi-layer", "--weight-decay", "-1"],
     "argument --weight-decay: expected a finite number, 0 or more, got '-1'"),
    (["--model", "multi-layer", "--init", "glorot"], "weight_init_std='glorot' is not a known"),
    (["--hidden", "a,b"], "expected layer sizes separated by commas"),
    (["--model", "multi-layer", "--hidden", "100,,100"],  # was [100, 100], silently
     "expected layer sizes separated by commas, such as 100,100,100; got '100,,100'"),
    (["--lr", "-1"], "argument --lr: expected a finite number above 0, got '-1'"),
    (["--optimizer", "momentum", "--lr", "nan"], "argument --lr: expected a finite number"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
    (["--iters", "0"], "argument --iters: expected a positive integer, got '0'"),
    (["--epochs", "0"], "argument --epochs: expected a finite number above 0, got '0'"),
    (["--epochs", "inf"], "argument --epochs: expected a finite number above 0, got 'inf'"),
    (["--seed", "-1"], "argument --seed: expected a non-negative integer, got '-1'"),
])
def test_train_script_refuses_bad_networks_in_one_line(tmp_path, args, message):
    full_env = dict(os.environ, PYTHONPATH=ROOT, **synthetic_data_env(tmp_path))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train_neuralnet.py"),
                        "--backend", "numpy", "--quiet", *args], capture_output=True, text=True,
                       env=full_env, timeout=120)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, kind, facts", [
    (["--init", "0.5"], "TwoLayerNet", {"std": 0.5, "layers": ["Affine1", "Relu1", "Affine2"]}),
    (["--model", "multi-layer", "--hidden", ""], "MultiLayerNet", {"layers": ["Affine1"]}),
    (["--model", "multi-layer", "--hidden", "20", "--dropout", "0.3"], "MultiLayerNetExtend",
     {"dropout": 0.3, "layers": ["Affine1", "Activation_function1", "Dropout1", "Affine2"]}),
    (["--model", "multi-layer", "--hidden", "20", "--batchnorm", "--activation", "sigmoid"],
     "MultiLayerNetExtend",
     {"activation": "sigmoid",
      "layers": ["Affine1", "BatchNorm1", "Activation_function1", "Affine2"]}),
])
def test_the_train_scripts_options_build_the_network_they_name(args, kind, facts):
    """Each option reaches the network: ``--init`` a number for the two-layer net, an empty
    ``--hidden`` no hidden layer (softmax regression), ``--dropout`` its ratio (and the
    extended net), ``--batchnorm`` and ``--activation``."""
    from scripts.train_neuralnet import build_network, parse_args
    _, options = parse_args(args)
    net = build_network(options, np.zeros((4, 784), dtype=np.float32))
    assert type(net).__name__ == kind and list(net.layers) == facts["layers"]
    if "std" in facts:
        assert float(np.std(to_host(net.params["W1"]))) == pytest.approx(facts["std"], rel=0.05)
    if "dropout" in facts:
        assert net.layers["Dropout1"].dropout_ratio == facts["dropout"]
    if "activation" in facts:
        assert net.activation == facts["activation"]


@pytest.mark.parametrize("args, message", [
    (["--activation", "sigmoid"], "--activation: only with --model multi-layer"),
    (["--dropout", "0.2", "--weight-decay", "0.1"],
     "--dropout, --weight-decay: only with --model multi-layer"),
    (["--hidden", ""], "--model two-layer has one hidden layer; got --hidden  (use --model "
                       "multi-layer)"),
    (["--init", "he"], "--init he needs --model multi-layer; two-layer takes a number"),
])
def test_the_train_script_refuses_chapter_6_options_for_the_two_layer_net(capsys, args,
                                                                          message):
    from scripts.train_neuralnet import parse_args
    with pytest.raises(SystemExit) as e:
        parse_args(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_hyperparameter_search_lists_the_best_trials_first(tmp_path):
    """Best-1 is the trial of the highest validation accuracy (ties in trial order), and
    a fifth of the samples (one at least) is held out for validation."""
    env = synthetic_data_env(tmp_path)
    out = run_script("hyperparameter_search.py", "--backend", "numpy", "--trials", "4",
                     "--epochs", "1", "--top", "3", "--out", str(tmp_path / "f.png"), env=env)
    assert "24 training and 6 validation samples; 4 trials of 1 epochs" in out
    trials = re.findall(r"trial +\d+: val acc (\S+) \| lr (\S+), weight decay (\S+)", out)
    best = re.findall(r"Best-\d+ \(val acc: (\S+)\) \| lr: (\S+), weight decay: (\S+)", out)
    assert len(trials) == 4 and len({lr for _, lr, _ in trials}) == 4  # each its own draw
    assert best == sorted(trials, key=lambda r: -float(r[0]))[:3]
    out = run_script("hyperparameter_search.py", "--backend", "numpy", "--trials", "1",
                     "--epochs", "1", "--train-size", "2", "--out", str(tmp_path / "f.png"),
                     env=env)
    assert "1 training and 1 validation samples" in out


@pytest.mark.parametrize("script", ["train_neuralnet.py", "train_convnet.py"])
def test_a_bad_number_is_refused_before_the_data_is_looked_for(tmp_path, script):
    """A negative learning rate or no epochs is said at once, in argparse's line, not after
    a download (here: none to be had) or the loading of the data."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--backend",
                        "numpy", "--lr", "-0.1", "--epochs", "2"], capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT, XPNET_DATA_DIR=str(tmp_path),
                                XDG_CACHE_HOME=str(tmp_path),
                                XPNET_MNIST_MIRROR="http://127.0.0.1:9/"))
    assert r.returncode == 2, r.stderr
    assert "argument --lr: expected a finite number above 0, got '-0.1'" in r.stderr
    assert "backend:" not in r.stdout and "127.0.0.1" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--dropout", "1"], "argument --dropout: expected a ratio in [0, 1), got '1'"),
    (["--weight-decay", "-0.1"],
     "argument --weight-decay: expected a finite number, 0 or more, got '-0.1'")])
def test_overfit_refuses_a_bad_ratio_or_decay_before_the_data_is_looked_for(tmp_path, args,
                                                                          message):
    """A dropout ratio of 1 or a negative weight decay was the network's error, after the
    data had been found and loaded (or a download tried)."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "overfit.py"), *args],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT, XPNET_DATA_DIR=str(tmp_path),
                                XDG_CACHE_HOME=str(tmp_path),
                                XPNET_MNIST_MIRROR="http://127.0.0.1:9/"))
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "backend:" not in r.stdout and "127.0.0.1" not in r.stderr


@pytest.mark.parametrize("model", ["simple", "deep"])
def test_train_convnet_end_to_end_and_resume(tmp_path, model):
    env = synthetic_data_env(tmp_path)
    ckpt, png = tmp_path / f"{model}.npz", tmp_path / f"{model}.png"
    args = ["--backend", "numpy", "--model", model, "--iters", "4", "--batch-size", "10",
            "--evaluate", "10", "--save", str(ckpt), "--quiet"]
    out = run_script("train_convnet.py", *args, "--plot", str(png), env=env)
    name = "SimpleConvNet" if model == "simple" else "DeepConvNet"
    assert f"network: {name}(input_dim=[1, 28, 28]" in out
    assert re.search(r"^final test acc: [01]\.\d{4}$", out, re.M) and is_png(png)
    again = run_script("train_convnet.py", *args, "--resume", env=env)
    assert "resumed from" in again
    assert again.strip().splitlines()[-1] == out.strip().splitlines()[-1]


def test_visualize_filter_before_and_after(tmp_path):
    env = synthetic_data_env(tmp_path)
    ckpt, png = tmp_path / "simple.npz", tmp_path / "filters.png"
    run_script("train_convnet.py", "--backend", "numpy", "--iters", "3", "--batch-size", "10",
               "--save", str(ckpt), "--quiet", env=env)
    out = run_script("visualize_filter.py", "--backend", "numpy", "--params", str(ckpt),
                     "--out", str(png), env=env)
    assert "filters: 30 of 5x5" in out and is_png(png)
    out = run_script("visualize_filter.py", "--backend", "numpy", "--epochs", "1",
                     "--out", str(png), env=env)
    assert "1 epoch(s) of mnist" in out and is_png(png)


def test_visualize_filter_takes_the_books_params_pkl(tmp_path):
    """The book's chapter-7 script draws the filters of its trained ``params.pkl``: a file
    written as its ``save_params`` writes one (a pickled dict of float64 arrays)."""
    import pickle
    import numpy as np
    from models import SimpleConvNet
    rng = np.random.default_rng(0)
    shapes = {k: tuple(v.shape) for k, v in SimpleConvNet(seed=0).params.items()}
    with open(tmp_path / "params.pkl", "wb") as f:
        pickle.dump({k: rng.standard_normal(shape) for k, shape in shapes.items()}, f)
    png = tmp_path / "filters.png"
    out = run_script("visualize_filter.py", "--backend", "numpy", "--params",
                     str(tmp_path / "params.pkl"), "--out", str(png))
    assert f"trained from {tmp_path / 'params.pkl'}" in out and is_png(png)


@pytest.mark.parametrize("args, message", [
    (["--book", "{tmp}"], "--book {tmp}: not a checkout of the book's repository (no "
                          "ch07/simple_convnet.py, ch07/params.pkl, ch08/deep_convnet.py, "
                          "ch08/deep_convnet_params.pkl)"),
    (["--book", "{tmp}", "--n", "0"], "argument --n: expected a positive integer, got '0'"),
    ([], "the following arguments are required: --book"),
])
def test_book_parity_says_what_it_needs(tmp_path, args, message):
    """scripts/book_parity.py compares with the book's code only where it is given a checkout
    of it: anything else is one line, before any data is read."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "book_parity.py"), *args],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 2 and message.replace("{tmp}", str(tmp_path)) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_training_cleanly_and_the_printed_command_resumes(tmp_path, signum, status):
    """Real signals to a real training process: one line, the exit status a shell expects,
    no traceback, and the command it prints finishes the run."""
    env = dict(os.environ, PYTHONPATH=ROOT, **synthetic_data_env(tmp_path))
    ckpt = tmp_path / "run.npz"
    args = [sys.executable, "-u", os.path.join(ROOT, "scripts", "train_neuralnet.py"),
            "--backend", "numpy", "--iters", "200000", "--batch-size", "3", "--save",
            str(ckpt)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path, preexec_fn=sigint_as_at_a_terminal)
    deadline = time.time() + 60
    while proc.poll() is None and not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)  # the first epoch's checkpoint: training is under way
    time.sleep(0.3)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    line = re.search(rf"interrupted by {name} after step (\d+) of 200000 \(epoch \d+\); "
                     rf"\S+run.npz holds it. Resume with: (.*)$", err, re.M)
    assert line, err
    command = line.group(2)
    assert command.endswith("--resume") and "train_neuralnet.py" in command
    # the printed command continues from that step (shortened here to end soon after)
    step = int(line.group(1))
    again = run_script("train_neuralnet.py", "--backend", "numpy", "--iters", str(step + 5),
                       "--batch-size", "3", "--save", str(ckpt), "--resume", "--quiet",
                       env=synthetic_data_env(tmp_path))
    assert f"resumed from {ckpt} at step " in again and "final test acc" in again


def test_a_new_run_says_it_replaces_a_checkpoint_and_refuses_to_replace_another_file(
        tmp_path):
    """``make train`` twice writes ``out/mnist.npz`` twice: the second run says that it
    replaces the first's checkpoint (and how to go on with it instead). A file there that
    is not a checkpoint (``--save data.npz``, a typo) was overwritten at the first epoch's
    end: refused before the data is read, the file left as it was."""
    env = synthetic_data_env(tmp_path)
    ckpt = tmp_path / "run.npz"
    common = ["--backend", "numpy", "--iters", "6", "--batch-size", "5", "--quiet"]
    first = run_script("train_neuralnet.py", *common, "--save", str(ckpt), env=env)
    assert "holds a run" not in first
    again = run_script("train_neuralnet.py", *common, "--save", str(ckpt), env=env)
    assert (f"note: {ckpt} holds a run at step 6 of 6; this new run replaces it at its "
            f"first checkpoint (--resume goes on with that run instead)") in again
    from models import TwoLayerNet
    TwoLayerNet(784, 50, 10).save_params(str(tmp_path / "net.npz"))
    params = run_script("train_neuralnet.py", *common, "--save", str(tmp_path / "net.npz"),
                        env=env)
    assert (f"note: {tmp_path / 'net.npz'} holds a TwoLayerNet's parameters; this new run "
            f"replaces them at its first checkpoint\n") in params
    other = tmp_path / "data.npz"
    np.savez(other, x=np.arange(3))
    before = other.read_bytes()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train_neuralnet.py"),
                           *common, "--save", str(other)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT, **env), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"error: --save {other}: no readable header (KeyError: 'meta'); a new run would "
            f"replace it: name another file, or move this one away") in done.stderr
    assert "data:" not in done.stdout and other.read_bytes() == before
    for resume in ([], ["--resume"]):  # a folder there: named as one (was "damaged or not
        # a checkpoint (IsADirectoryError ...)", and with --resume the Trainer's words)
        done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts",
                                                            "train_neuralnet.py"),
                               *common, "--save", str(tmp_path), *resume], capture_output=True,
                              text=True, env=dict(os.environ, PYTHONPATH=ROOT, **env),
                              timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"error: --save {tmp_path}: is a folder; expected a file's name\n" in done.stderr
        assert "data:" not in done.stdout


MPIEXEC = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
           or shutil.which("mpiexec"))


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec here (the test extra brings MPICH's)")
def test_a_diverged_data_parallel_run_says_so_once(tmp_path):
    """Every rank meets the same global loss and stops at the same step; rank 0 alone
    says so, and says that no checkpoint had been written yet."""
    pytest.importorskip("mpi4py")
    env = child_env(**synthetic_data_env(tmp_path))
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable,
                           os.path.join(ROOT, "scripts", "train_neuralnet.py"), "--backend",
                           "numpy", "--iters", "30", "--batch-size", "10", "--lr", "1e30",
                           "--save", str(tmp_path / "run.npz")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("error: Trainer: the loss became nan at step") == 1, done.stderr
    assert "no checkpoint had been written yet" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec here (the test extra brings MPICH's)")
def test_a_data_parallel_run_interrupted_says_how_to_resume_it_under_mpiexec(tmp_path):
    """Ctrl-C to ``mpiexec -n 2``: rank 0 alone says so, and its resume command is the
    run's own, launcher included (it said ``python ...``, which goes on in one process);
    the command, run, finishes the run."""
    pytest.importorskip("mpi4py")
    env = child_env(**synthetic_data_env(tmp_path))
    ckpt = tmp_path / "run.npz"
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-u",
                             os.path.join(ROOT, "scripts", "train_neuralnet.py"), "--backend",
                             "numpy", "--iters", "200000", "--batch-size", "4", "--save",
                             str(ckpt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path,
                            preexec_fn=sigint_as_at_a_terminal)
    try:
        deadline = time.time() + 60
        while proc.poll() is None and not ckpt.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = re.findall(r"interrupted by SIGINT after step (\d+) of 200000 .*Resume with: (.*)$",
                       err, re.M)
    assert len(lines) == 1, err  # rank 0 alone
    step, command = lines[0]
    assert command.startswith("mpiexec -n 2 ") and command.endswith("--resume"), command
    words = command.split()  # this machine's mpiexec (MPICH's, in the venv), a shorter run
    words[0] = MPIEXEC
    words[words.index("200000")] = str(int(step) + 6)
    done = subprocess.run(words, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed from {ckpt} at step {step}" in done.stdout
    assert done.stdout.count("final test acc") == 1


LOSS_CURVE = r'''
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "scripts"))
import numpy as np
import backends
from experiment import batches_of, train_losses
from framework import distributed
from framework.optimizers import Momentum
from models import TwoLayerNet
rng = np.random.default_rng(0)
x, t = rng.random((40, 12)), rng.integers(0, 3, 40)
net = TwoLayerNet(12, 7, 3, seed=1, weight_init_std=0.5, dtype="float64")
seen = set()  # the batch sizes this rank's gradient saw
gradient = net.gradient
def recording(x, t):
    seen.add(int(x.shape[0]))
    return gradient(x, t)
net.gradient = recording
losses = train_losses(net, Momentum(lr=0.1), batches_of(x, t, 10, backends.current()), 12, seed=3)
with open(f"{sys.argv[2]}.{distributed.world().rank}", "w") as f:
    f.write(repr([losses, sorted(seen)]))
'''


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec here (the test extra brings MPICH's)")
def test_the_experiments_loop_is_data_parallel_under_mpiexec(tmp_path):
    """Chapter 6's comparison loop (optimizer_compare, weight_init_compare) under
    ``mpiexec -n 3``: every rank records one process's losses (float64, to 1e-12)."""
    pytest.importorskip("mpi4py")
    import ast
    env = child_env(XPNET_BACKEND="numpy")
    probe = tmp_path / "probe.py"
    probe.write_text(LOSS_CURVE)
    for command, name in (([], "one"), ([MPIEXEC, "-n", "3"], "three")):
        done = subprocess.run(command + [sys.executable, str(probe), ROOT, name],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
    want, sizes = ast.literal_eval((tmp_path / "one.0").read_text())
    assert len(want) == 12 and sizes == [10]
    for rank, shard in enumerate([3, 3, 4]):  # 10 on 3 ranks; each its shard alone
        got, sizes = ast.literal_eval((tmp_path / f"three.{rank}").read_text())
        assert sizes == [shard], rank
        assert got == pytest.approx(want, rel=1e-12), rank


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec here (the test extra brings MPICH's)")
def test_a_rank_whose_options_are_refused_ends_the_job(tmp_path):
    """One rank of two refuses its command line (mpiexec's ``:`` gives each its own) while
    the other goes on to train and waits for it: the script ends the whole job, with
    the refusal shown, instead of leaving rank 0 waiting forever."""
    pytest.importorskip("mpi4py")
    env = child_env(**synthetic_data_env(tmp_path))
    script = [sys.executable, os.path.join(ROOT, "scripts", "train_neuralnet.py"), "--backend",
              "numpy", "--iters", "30", "--batch-size", "10"]
    started = time.time()
    done = subprocess.run([MPIEXEC, "-n", "1", *script, ":", "-n", "1", *script, "--resume"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode != 0 and time.time() - started < 60
    assert "error: --resume needs --save PATH" in done.stderr, done.stderr
