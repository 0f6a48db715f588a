"""backends/settings.py: every XPNET_* variable read in one place, once, and checked by name."""

import pathlib
import re

import numpy as np
import pytest

import backends
from backends.settings import VARIABLES, Settings
from tests.conftest import ROOT


def test_the_readme_lists_every_variable_in_one_table():
    text = pathlib.Path(ROOT, "README.md").read_text()
    section = text.split("### Settings", 1)[1].split("\n#", 1)[0]
    listed = re.findall(r"^\| `(XPNET_\w+)` \|", section, re.M)
    assert listed == [v.name for v in VARIABLES]
    # the table's backends are the registry's, in the code's words as in the README's
    names = backends.NAMES
    assert all(f"`{name}`" in section for name in names)
    assert all(name in VARIABLES[0].meaning for name in names), VARIABLES[0].meaning


def test_nothing_else_reads_an_xpnet_variable():
    """Only settings.py reads XPNET_* from the environment (the scripts' command lines
    and the tests set them for child processes, which is writing, not reading)."""
    readers = []
    for top in ("backends", "framework", "models"):
        for path in pathlib.Path(ROOT, top).rglob("*.py"):
            if path.name == "settings.py":
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"environ(\.get)?\s*[\[(]\s*[\"']XPNET_", line) or \
                        re.search(r"getenv\(\s*[\"']XPNET_", line):
                    readers.append(f"{path.relative_to(ROOT)}:{i}")
    assert not readers, readers


@pytest.mark.parametrize("name, value, message", [
    ("XPNET_HOST_THREADS", "0", "expected a positive integer"),
    ("XPNET_HOST_KERNELS", "yes", "expected 1 .* or 0"),
    ("XPNET_FUSED", "off", "expected 1 .* or 0"),
    ("XPNET_FUSED", "true", "expected 1 .* or 0"),  # no dialect of yes: 1 or 0 alone
    ("XPNET_CUDA_GRAPH", "2", "expected 1 .* or 0"),
    ("XPNET_GRAPH_GEMM", "blas", "expected 'auto'"),
    ("XPNET_MNIST_MIRROR", "http://example.org/x", "must be a base URL ending in '/'"),
])
def test_a_bad_value_is_refused_naming_the_variable(name, value, message):
    with pytest.raises(ValueError, match=rf"{name}='{re.escape(value)}'.*{message}"):
        Settings.read({name: value})


def test_unset_and_empty_mean_the_default():
    assert Settings.read({}) == Settings() == Settings.read({v.name: "" for v in VARIABLES})
    read = Settings.read({"XPNET_HOST_THREADS": "3", "XPNET_CACHE_DIR": "/tmp/k",
                          "XPNET_GRAPH_GEMM": " Own "})
    assert (read.host_threads, read.cache_dir, read.graph_gemm) == (3, "/tmp/k", "own")
    assert any(line.startswith("XPNET_HOST_THREADS=3") for line in read.lines())
    assert "XPNET_FUSED=1 (default)" in read.lines()


def test_a_variable_xpnet_does_not_read_is_named_with_the_closest_it_does():
    """XPNET_THREADS=2 (for XPNET_HOST_THREADS) changed nothing, without a word; it is an
    UnknownVariableWarning naming the variable meant. The known ones, unset or set, and the
    test suite's own are not."""
    from backends.settings import UnknownVariableWarning
    with pytest.warns(UnknownVariableWarning) as said:
        read = Settings.read({"XPNET_THREADS": "2", "XPNET_HOST_KERNEL": "0", "XPNET_XYZ": "1",
                              "XPNET_SEED": "3",  # like none closely: no guess offered
                              "XPNET_NVRTC": "/lib/libnvrtc.so", "XPNET_FUSED": "0"})
    assert read == Settings(fused=False)  # the rest as if unset
    assert [str(w.message) for w in said] == [
        "XPNET_HOST_KERNEL is not a variable xpnet reads, so it changes nothing; did you mean "
        "XPNET_HOST_KERNELS? (python -m backends lists the variables)",
        "XPNET_SEED is not a variable xpnet reads, so it changes nothing (python -m backends "
        "lists the variables)",
        "XPNET_THREADS is not a variable xpnet reads, so it changes nothing; did you mean "
        "XPNET_HOST_THREADS? (python -m backends lists the variables)",
        "XPNET_XYZ is not a variable xpnet reads, so it changes nothing (python -m backends "
        "lists the variables)"]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Settings.read({v.name: "" for v in VARIABLES})
    import subprocess
    import sys
    from tests.conftest import child_env
    done = subprocess.run([sys.executable, "-m", "backends"], capture_output=True, text=True,
                          timeout=60, env=child_env(XPNET_BACKEND="numpy", XPNET_DEVICES="cpu"),
                          cwd=ROOT)  # a real process, as a user meets it
    assert done.returncode == 0, done.stderr
    assert "<environment>:0: UnknownVariableWarning: XPNET_DEVICES is not a variable xpnet " \
           "reads, so it changes nothing; did you mean XPNET_DEVICE?" in done.stderr


def test_python_m_backends_prints_the_settings():
    import subprocess
    import sys
    from tests.conftest import child_env
    done = subprocess.run([sys.executable, "-m", "backends"], capture_output=True, text=True,
                          timeout=60, env=child_env(XPNET_BACKEND="numpy",
                                                    XPNET_GRAPH_GEMM="own"), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "XPNET_GRAPH_GEMM=own\n" in done.stdout and "XPNET_BACKEND=numpy\n" in done.stdout
    assert "fast_paths" not in done.stdout  # said only where they are off:
    assert Settings(fast_paths=False).lines()[-1] == (
        "fast_paths off: NumPy, CuPy and PyTorch compute with the standard's operations")


def test_the_settings_change_for_a_block_and_come_back():
    before = backends.settings()
    with backends.configured(fused=False, graph_gemm="cublas") as inside:
        assert backends.settings() is inside and not inside.fused
        assert inside.graph_gemm == "cublas" and inside.host_kernels == before.host_kernels
    assert backends.settings() is before
    with pytest.raises(ValueError, match="graph_gemm"):
        with backends.configured(graph_gemm="bogus"):
            pass
    with pytest.raises(ValueError, match=r"^host_threads='0': expected a positive integer"):
        with backends.configured(host_threads=0):  # as XPNET_HOST_THREADS=0 is refused
            pass
    assert backends.settings() is before


def test_kept_gives_back_the_settings_and_drops_the_operations_made_under_others(monkeypatch):
    """What a test (or the pytest plugin around each one) changed inside ``kept()`` goes:
    the settings before come back, and so do operations built under them, never those
    the block built under its own (here: NumPy's without the compiled kernels)."""
    import numpy as np
    x = np.ones((2, 2), np.float32)
    before = backends.settings()
    with backends.kept():
        monkeypatch.setenv("XPNET_HOST_KERNELS", "0" if before.host_kernels else "1")
        backends.reset()
        inside = backends.ops_for(x)
        assert backends.settings().host_kernels is not before.host_kernels
    assert backends.settings() is before
    assert backends.ops_for(x) is not inside


def test_a_layer_computes_with_the_settings_in_force_after_a_reset(monkeypatch):
    """A layer finds its operations once for each kind of input, and a reset (new settings
    read from the environment) is a new kind: the layer takes the new settings' operations
    on its next call, not those it found before."""
    import numpy as np
    from framework.layers import Relu
    x = np.ones((2, 3), np.float32)
    backends.settings()  # read before the layer binds (a first read is a new generation)
    layer = Relu()
    layer.forward(x)
    first = layer._ops
    with backends.kept():
        monkeypatch.setenv("XPNET_HOST_KERNELS", "0" if backends.settings().host_kernels else "1")
        backends.reset()
        layer.forward(x)
        assert layer._ops is backends.ops_for(x) and layer._ops is not first


def test_a_scoped_switch_or_mirror_is_checked_as_its_variable_would_be():
    """configured(fast_paths="no") kept the string, which is true: the fast paths stayed on;
    a mirror without its '/' was taken, where XPNET_MNIST_MIRROR refuses it."""
    from backends import dispatch
    before = backends.settings()
    for name in ("host_kernels", "fused", "cuda_graph", "fast_paths"):
        with pytest.raises(ValueError, match=rf"^backends\.configured: {name} must be True or "
                                             rf"False, got 'no'$"):
            with backends.configured(**{name: "no"}):
                pass
    with pytest.raises(ValueError, match=r"^backends\.configured: fast_paths must be True or "
                                         r"False, got 'off'$"):
        dispatch.use_fast_paths("off")
    with pytest.raises(ValueError, match=r"^mnist_mirror='http://127\.0\.0\.1:9' must be a "
                                         r"base URL ending in '/'"):
        with backends.configured(mnist_mirror="http://127.0.0.1:9"):
            pass
    assert backends.settings() is before
    with backends.configured(fast_paths=np.False_, fused=0) as inside:  # NumPy's, 0 and 1
        assert inside.fast_paths is False and inside.fused is False
