"""backends/__init__.py, the shim: choosing, switching and probing array backends."""

import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

import backends
import backends.backend
from framework.testing.plugin import unusable
from tests.conftest import ROOT


def run_module(env_value, **extra):
    env = dict(os.environ, PYTHONPATH=ROOT, **extra)
    if env_value is None:
        env.pop("XPNET_BACKEND", None)
    else:
        env["XPNET_BACKEND"] = env_value
    return subprocess.run([sys.executable, "-m", "backends"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_module_answers_help_and_refuses_what_it_does_not_take():
    """It read no arguments at all: --help printed the report, a typo went unnoticed."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    for args, status, stream, text in (
            (["--help"], 0, "stdout", "usage: python -m backends [-h]"),
            (["--device", "cuda"], 2, "stderr", "unrecognized arguments: --device cuda")):
        r = subprocess.run([sys.executable, "-m", "backends", *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == status and text in getattr(r, stream), r.stderr
        assert "backend:" not in r.stdout


def test_env_numpy_picks_numpy():
    r = run_module("numpy")
    assert r.returncode == 0, r.stderr
    assert "backend: numpy" in r.stdout
    assert "device:  CPU" in r.stdout
    assert f"numpy:   {np.__version__}" in r.stdout


def test_it_reports_the_host_threads_and_refuses_a_bad_count():
    r = run_module("numpy", XPNET_HOST_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert "host:    3 thread(s) for the CPU's passes (XPNET_HOST_THREADS=3)" in r.stdout
    r = run_module("numpy", XPNET_HOST_THREADS="zero")
    assert r.returncode == 2
    assert "XPNET_HOST_THREADS='zero': expected a positive integer" in r.stderr


@pytest.mark.parametrize("value", ["auto", None])
def test_env_auto_picks_what_is_usable(value):
    r = run_module(value)
    assert r.returncode == 0, r.stderr
    expected = "cupy" if "cupy" in backends.available() else "numpy"
    assert f"backend: {expected}" in r.stdout
    assert "auto" in r.stdout  # the reason names the rule that chose


def test_env_bogus_is_refused_with_the_allowed_values():
    r = run_module("bogus")
    assert r.returncode != 0
    assert "XPNET_BACKEND='bogus'" in r.stderr
    assert "numpy, cupy, torch, array_api_strict, jax, auto" in r.stderr


def test_env_cupy_without_gpu_fails_and_says_what_to_do():
    if "cupy" in backends.available():
        pytest.skip("a GPU is usable here, so XPNET_BACKEND=cupy succeeds")
    r = run_module("cupy")
    assert r.returncode != 0
    assert "backend: numpy" not in r.stdout  # never a silent fallback
    assert "XPNET_BACKEND=cupy" in r.stderr and "XPNET_BACKEND=numpy" in r.stderr
    try:
        import cupy  # noqa: F401
    except Exception:  # not installed: installing it is the remedy
        assert "xpnet[cuda12]" in r.stderr
    else:  # installed, but no GPU or driver: installing it again would not help
        assert "is installed but" in r.stderr and "to install it" not in r.stderr, r.stderr


def test_cupy_by_name_raises_runtime_error_in_process():
    if "cupy" in backends.available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(RuntimeError, match="cannot be used"):
        backends.use("cupy")


def test_a_backend_says_who_chose_it():
    """Its ``reason`` (what ``python -m backends`` prints) names who asked, in their words."""
    assert backends.use("numpy").reason == "backends.use=numpy (asked for by name)"
    with backends.using("numpy", device="cpu") as chosen:
        assert chosen.reason == "backends.use=numpy (asked for by name)"
    assert backends.chosen("numpy").reason == "--backend=numpy (asked for by name)"


def test_use_unknown_name_raises_value_error():
    with pytest.raises(ValueError, match="'mlx'.*numpy, cupy, torch, array_api_strict, jax, "
                                         "auto"):
        backends.use("mlx")
    # a name is a name whatever its case and the spaces around it, as XPNET_BACKEND's is
    assert backends.use(" NumPy ").name == "numpy"
    assert backends.current().name == "numpy"


def test_env_is_read_when_first_needed(monkeypatch):
    with backends.kept():
        backends.reset()
        monkeypatch.setenv("XPNET_BACKEND", "numpy")
        assert backends.current().name == "numpy"
        monkeypatch.setenv("XPNET_BACKEND", "bogus")
        assert backends.current().name == "numpy"  # chosen once, then kept
        backends.reset()
        with pytest.raises(ValueError, match="bogus"):
            backends.current()


def test_the_settings_are_read_once_and_a_change_is_scoped(monkeypatch):
    with backends.kept():
        monkeypatch.setenv("XPNET_HOST_KERNELS", "0")
        backends.reset()
        assert backends.settings().host_kernels is False
        monkeypatch.setenv("XPNET_HOST_KERNELS", "1")
        assert backends.settings().host_kernels is False  # read once, then kept
        with backends.configured(host_kernels=True):
            assert backends.settings().host_kernels is True
        assert backends.settings().host_kernels is False
        monkeypatch.setenv("XPNET_FUSED", "off")
        backends.reset()
        with pytest.raises(ValueError, match=r"XPNET_FUSED='off': expected 1 .* or 0"):
            backends.settings()


def test_using_gives_the_default_back(backend):
    before = backends.current()
    with backends.using("numpy") as inside:
        assert backends.current() is inside and inside.name == "numpy"
    assert backends.current() is before


def test_a_using_block_is_the_default_of_its_own_thread_alone():
    """Two threads, each in a ``using`` block at once (a pool building networks on two
    backends): each block set the process's one default, so a thread built its network on
    the other's backend, and the blocks' exits gave back each other's defaults, leaving
    the process on array-api-strict. Each thread now sees its own block; inside a block
    ``use`` changes that block's backend alone; the default is the one from before."""
    import threading
    from models import TwoLayerNet
    before = backends.current()
    meet, numpy_out = threading.Barrier(2, timeout=30), threading.Event()
    seen, failed = {}, []

    def work(name, other):
        try:
            with backends.using(name):
                meet.wait()  # both blocks open
                net = TwoLayerNet(2, 3, 2, seed=0)
                seen[name] = [backends.current().name, backends.backend_of(net.params["W1"]).name]
                meet.wait()
                backends.use(other)  # this block's, not the process's nor the other's
                meet.wait()
                seen[name].append(backends.current().name)
                if name == "array_api_strict":  # numpy's block closes first, this one after
                    numpy_out.wait(30)
            if name == "numpy":
                numpy_out.set()
        except Exception as e:  # (an assertion in a thread would not fail the test)
            failed.append(e)
            meet.abort()
            numpy_out.set()

    threads = [threading.Thread(target=work, args=pair) for pair in
               (("numpy", "array_api_strict"), ("array_api_strict", "numpy"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failed, failed
    assert seen == {"numpy": ["numpy", "numpy", "array_api_strict"],
                    "array_api_strict": ["array_api_strict", "array_api_strict", "numpy"]}
    assert backends.current() is before


def test_xp_follows_use(backend):
    assert backends.xp is backend.xp
    assert backends.current() is backend


def test_asarray_and_round_trip(backend):
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    dev = backend.asarray(host, dtype="float32")
    assert backends.backend_of(dev) == backend
    assert backends.dtype_name(dev.dtype) == "float32"
    back = backends.to_numpy(dev)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    np.testing.assert_array_equal(backends.to_numpy(backends.to_device(host)), host)
    backend.synchronize()


def test_get_array_module_of_host_values_is_numpy_without_importing_cupy():
    code = ("import sys, numpy, backends; "
            "assert backends.get_array_module(numpy.ones(2), 3.0, [1]) is numpy; "
            "assert 'cupy' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert r.stdout.strip() == "ok", r.stderr


def test_available_always_has_numpy_first():
    names = backends.available()
    assert names[0] == "numpy"
    assert set(names) <= set(backends.NAMES)


def test_device_and_its_description(backend):
    if backend.name == "numpy":
        assert backend.device == "cpu" and backend.description == "CPU"
    elif backend.name == "cupy":
        assert "compute capability" in backend.description
    else:  # the namespace's own device object, and where the arrays it makes live
        assert backends.to_device([1.0]).device == backend.device
        assert str(backend.device) in backend.description


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_a_device_is_named_in_either_case(name):
    """``--device CPU`` is the CPU, as ``cpu`` is (the libraries' own names are lower case)."""
    if name not in backends.available():
        pytest.skip(f"{name} is not usable here")
    with backends.using(name, device="CPU") as upper:
        pass
    with backends.using(name, device="cpu") as lower:
        pass
    assert upper == lower


def test_a_backend_is_its_library_on_one_device():
    """Two backends are equal where library and device are (a dict or a set keyed by
    backend keeps one per device): array-api-strict's two devices are two backends."""
    if "array_api_strict" not in backends.available():
        pytest.skip("array_api_strict is not usable here")
    with backends.using("array_api_strict", device="device1") as one:
        pass
    with backends.using("array_api_strict", device="device2") as two:
        pass
    with backends.using("array_api_strict", device="device1") as again:
        pass
    assert one != two and one == again and len({one, two, again}) == 2


def test_mixing_backends_is_named():
    with pytest.raises(TypeError, match="Affine1: arrays from different backends"):
        class FakeCupy:  # a stand-in type whose module says cupy
            shape = (2,)
        FakeCupy.__module__ = "cupy._core.core"
        backends.check_same_backend("Affine1", x=np.ones(2), W=FakeCupy())


def test_same_backend_fast_path_keeps_the_rules():
    class FakeCupy:
        shape = (2,)
    FakeCupy.__module__ = "cupy._core.core"
    memmap_like = np.ones(3).view(np.memmap)  # a NumPy subclass is still the host
    backends.check_same_backend("L", x=np.ones(2), W=np.ones(3), b=memmap_like)
    backends.check_same_backend("L", x=np.ones(2), scale=0.5)  # scalars go with anything
    backends.check_same_backend("L", x=FakeCupy(), scale=0.5)
    with pytest.raises(TypeError, match=r"L: arrays from different backends \(x is cupy, "
                                        r"W is numpy\)"):
        backends.check_same_backend("L", x=FakeCupy(), scale=0.5, W=np.ones(2))
    assert not backends.is_device_array(memmap_like) and backends.is_device_array(FakeCupy())


def test_a_command_lines_backend_and_device_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("XPNET_BACKEND", "numpy")
    backends.reset()
    assert backends.chosen().name == backends.current().name
    assert backends.chosen("numpy", "cpu").name == "numpy"
    monkeypatch.setenv("XPNET_BACKEND", "auto")
    backends.reset()
    with pytest.raises(ValueError, match="device='cpu' needs a backend: name one of numpy"):
        backends.chosen(None, "cpu")  # auto picks its own device: never silently ignored
    with pytest.raises(ValueError, match="device='cpu' needs a backend"):
        backends.use("auto", device="cpu")
    # the errors name the options typed, not backends.use (which the scripts never called)
    with pytest.raises(ValueError, match=r"^--device='cpu' needs a backend"):
        backends.chosen(None, "cpu")
    with pytest.raises(ValueError, match=r"^--backend='nump' is not a backend"):
        backends.chosen("nump")
    with pytest.raises(RuntimeError, match=r"^--backend=numpy with --device='cuda': numpy has "
                                           r"no device 'cuda' here; it has: cpu"):
        backends.chosen("numpy", "cuda")
    monkeypatch.setenv("XPNET_BACKEND", "numpy")
    backends.reset()
    with pytest.raises(RuntimeError, match=r"^XPNET_BACKEND=numpy with --device='cuda'"):
        backends.chosen(None, "cuda")


def test_the_report_stops_quietly_when_its_reader_does():
    """``python -m backends | head -1`` printed a BrokenPipeError traceback once ``head``
    had gone. A real pipe whose reader closes it before the report is written (the report
    takes an import of NumPy and a look at BLAS: far longer than the close)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("XPNET_BACKEND", None)
    proc = subprocess.Popen([sys.executable, "-m", "backends"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_environments_device_without_its_backend_is_refused(monkeypatch):
    """``XPNET_DEVICE=cpu`` with XPNET_BACKEND unset (auto): auto picks its own device, so the
    device would be dropped without a word; the error says to name a backend."""
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    backends.reset()
    with pytest.raises(ValueError, match=r"^XPNET_DEVICE='cpu' needs a backend: set "
                                         r"XPNET_BACKEND to one of numpy, "):
        backends.current()


def test_the_install_hint_is_given_only_where_the_library_is_missing():
    """Installing is the remedy for a library that is not there, not for one that is there
    without its device or driver: two registered libraries, one of each."""
    from backends.backend import Unusable
    from backends.registry import REGISTRY
    failures = {"missinglib": Unusable("missinglib is not installed", missing=True),
                "driverlib": Unusable("driverlib found no driver"),
                "selfhelp": Unusable("selfhelp is not installed (pip install selfhelp)",
                                     missing=True)}
    module = types.ModuleType("unusable_backends")
    for name, failure in failures.items():
        def load(cls, failure=failure):
            raise failure
        setattr(module, name, type(name, (backends.backend.Backend,), {
            "name": name, "install": f"pip install {name}", "load": classmethod(load)}))
    sys.modules["unusable_backends"] = module
    try:
        for name in failures:
            REGISTRY.register(name, f"unusable_backends:{name}")
        with pytest.raises(RuntimeError) as missing:
            backends.use("missinglib")
        with pytest.raises(RuntimeError) as driver:
            backends.use("driverlib")
        with pytest.raises(RuntimeError) as selfhelp:
            backends.use("selfhelp")
    finally:
        for name in failures:
            REGISTRY.unregister(name)
        del sys.modules["unusable_backends"]
    assert "missinglib is not installed; to install it: pip install missinglib" in \
        str(missing.value)
    assert "driverlib found no driver; or run on the CPU with XPNET_BACKEND=numpy" in \
        str(driver.value) and "to install" not in str(driver.value)
    # a library's own words that already say how to install it are not said twice
    assert str(selfhelp.value) == ("backends.use=selfhelp, but that backend cannot be used: "
                                   "selfhelp is not installed (pip install selfhelp); or run "
                                   "on the CPU with XPNET_BACKEND=numpy")


def test_pytorchs_own_names_of_its_cpu_are_its_cpu():
    """``XPNET_DEVICE=cpu:0`` (``str(torch.device("cpu", 0))``) was "torch has no device
    'cpu:0' here; it has: cpu"; a CPU past the first is still refused."""
    if "torch" not in backends.available():
        pytest.skip(unusable("torch", backends.backend_class("torch").usable()[1]))
    import torch
    for name in ("cpu:0", "CPU:0", torch.device("cpu", 0)):
        with backends.using("torch", device=name) as chosen:
            assert chosen.device == torch.device("cpu")
    with pytest.raises(RuntimeError, match=r"torch has no device 'cpu:1' here; it has: cpu"):
        backends.use("torch", device="cpu:1")


def test_an_accelerator_a_library_does_not_see_says_why():
    """``XPNET_DEVICE=cuda`` where PyTorch sees no GPU, or ``gpu`` on JAX's CPU build, listed
    the CPUs alone and left the user to find out why: now the error says which PyTorch sees
    no GPU, and that JAX's GPU and TPU builds are packages of their own."""
    checked = 0
    if "torch" in backends.available():
        import torch
        if not torch.cuda.is_available():
            with pytest.raises(RuntimeError, match=rf"torch has no device 'cuda:0' here; it "
                                                   rf"has: .*\(this PyTorch, "
                                                   rf"{re.escape(torch.__version__)}, sees no "
                                                   rf"GPU: torch.cuda.is_available\(\) is False"):
                backends.use("torch", device="cuda:0")
            checked += 1
    if "jax" in backends.available():
        names = backends.backend_class("jax").devices()
        for name in ("gpu", "tpu"):
            if name not in names:
                with pytest.raises(RuntimeError, match=rf"jax has no device '{name}' here; it "
                                                       rf"has: .*\(JAX's GPU and TPU builds "
                                                       rf"are installed apart from its CPU "
                                                       rf"one: pip install 'jax\[cuda12\]', "
                                                       rf"or 'jax\[tpu\]'\)"):
                    backends.use("jax", device=name)
                checked += 1
        with pytest.raises(RuntimeError, match=r"no device 'cpu:99' here; it has: [^(]*$"):
            backends.use("jax", device="cpu:99")  # a CPU past the last: no word of builds
    if not checked:
        pytest.skip("neither PyTorch without a GPU nor JAX without one is installed here")
