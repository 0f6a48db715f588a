"""The host kernels' build: compile ``kernels/xpnet_host.c`` on first use, cache, bind with ctypes.

The kernels are C of ours in ``backends/host/kernels/`` (``conv.h``: the direct
convolution; ``relu.h``; ``pool.h``: 2 x 2 max pooling), each written once
for a type ``T`` and included by ``xpnet_host.c`` for float and double. On
first use :func:`load` compiles that unit with the system's C compiler
(``cc -O3 -march=native``, or ``$CC``) into the cache folder
(``XPNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/xpnet`` or ``~/.cache/xpnet``),
once per source, compiler, flags and CPU, and loads it with ctypes, which
lets go of the GIL during a call (so the pool's threads run parts of the
work at once). With no compiler, a failed build, or ``XPNET_HOST_KERNELS=0``,
it returns None with the reason and the host runs its NumPy code (im2col +
BLAS). :mod:`backends.host.conv` and :mod:`backends.host.ops` drive the kernels.
"""

import ctypes
import hashlib
import importlib.resources
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

ENV_VAR = "XPNET_HOST_KERNELS"
CACHE_ENV_VAR = "XPNET_CACHE_DIR"
FLAGS = ("-O3", "-march=native", "-fno-strict-aliasing", "-shared", "-fPIC")
DW_CHUNK = 2048  # grid positions a dW pass sums at a time (docs/performance.md: 2048 best)
UNIT = "xpnet_host.c"  # the compilation unit; it includes the other files
FLOAT_TYPES = ("float32", "float64")


def sources():
    """``{file name: text}`` of every kernel source, read from the installed package."""
    folder = importlib.resources.files("backends.host") / "kernels"
    return {f.name: f.read_text() for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith((".c", ".h"))}


_ARGS_CONV = ["p", "l", "p", "p", "i", "i", "i", "i", "l", "l", "l", "l", "l", "p", "l", "l", "l"]
_ARGS_DW = ["p", "l", "p", "l", "i", "i", "i", "i", "l", "p", "l", "l", "l"]
_ARGS_CONV_PX = ["p", "l", "p", "p", "i", "i", "i", "i", "l", "l", "l", "l", "p", "l", "l", "l"]
_ARGS_DW_PX = ["p", "i", "p", "l", "i", "i", "i", "l", "l", "l", "l", "p", "l", "l"]
_ARGS_RELU = ["p", "p", "p", "l"]
_ARGS_POOL = ["p", "p", "p", "l", "l", "l", "l"]
_CTYPES = {"p": ctypes.c_void_p, "l": ctypes.c_long, "i": ctypes.c_int}

_loaded = None  # (Kernels or None, reason), once per process


class Kernels:
    """The compiled library: ``conv``, ``dw``, ``conv_px``, ``dw_px``, ``relu``, ``max_pool``
    and ``max_pool_grad``, each a dict by dtype name, and each dtype's block size for
    ``conv``."""

    def __init__(self, library, path):
        self.path = path
        self.conv, self.dw, self.conv_px, self.dw_px, self.relu = {}, {}, {}, {}, {}
        self.max_pool, self.max_pool_grad = {}, {}

        def function(name, args):
            f = getattr(library, name)
            f.argtypes = [_CTYPES[a] for a in args]
            f.restype = None
            return f

        for dtype in FLOAT_TYPES:
            self.conv[dtype] = function(f"xpnet_conv_{dtype}", _ARGS_CONV)
            self.dw[dtype] = function(f"xpnet_conv_dw_{dtype}", _ARGS_DW)
            self.conv_px[dtype] = function(f"xpnet_conv_px_{dtype}", _ARGS_CONV_PX)
            self.dw_px[dtype] = function(f"xpnet_conv_dw_px_{dtype}", _ARGS_DW_PX)
            self.relu[dtype] = function(f"xpnet_relu_{dtype}", _ARGS_RELU)
            self.max_pool[dtype] = function(f"xpnet_max_pool_{dtype}", _ARGS_POOL)
            self.max_pool_grad[dtype] = function(f"xpnet_max_pool_grad_{dtype}", _ARGS_POOL)
        # outputs a block computes: grids are rounded up to whole blocks
        self.block = {"float32": library.xpnet_block_floats(),
                      "float64": library.xpnet_block_doubles()}
        self.vector_bytes = library.xpnet_vector_bytes()


def cache_dir(environ=None):
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV_VAR):
        return pathlib.Path(environ[CACHE_ENV_VAR])
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "xpnet"


def _cpu_signature():
    # -march=native code is only good for this CPU: a cache shared between
    # machines (a network home folder) must not hand one CPU's build to another.
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _compiler(environ):
    cc = environ.get("CC")
    if cc:
        return shutil.which(cc)
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build(folder, environ=None, flags=FLAGS):
    """The kernels' shared library in ``folder``, compiled with ``flags`` unless there
    already: its path.

    Written to a temporary name and renamed, so a concurrent or interrupted
    build never leaves a half-written library behind. Raises ``RuntimeError``
    with the compiler's message when it fails.
    """
    environ = os.environ if environ is None else environ
    cc = _compiler(environ)
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang on PATH, or $CC)")
    texts = sources()
    key = hashlib.sha256("\n".join([*(f"{name}\n{text}" for name, text in texts.items()), cc,
                                    " ".join(flags), _cpu_signature()]).encode()).hexdigest()[:16]
    folder = pathlib.Path(folder)
    path = folder / f"xpnet_host-{key}.so"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for name, text in texts.items():  # beside each other, as xpnet_host.c includes them
            (pathlib.Path(tmp) / name).write_text(text)
        src = pathlib.Path(tmp) / UNIT
        out = pathlib.Path(tmp) / path.name
        flags = list(flags)
        done = subprocess.run([cc, *flags, "-o", str(out), str(src)],
                              capture_output=True, text=True)
        if done.returncode != 0 and "-march=native" in flags:  # not on some clang targets
            flags.remove("-march=native")
            done = subprocess.run([cc, *flags, "-o", str(out), str(src)],
                                  capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed to build the host kernels: "
                               f"{done.stderr.strip()[-2000:]}")
        os.replace(out, path)
    return path


def load(environ=None):
    """``(Kernels, reason)`` the first time it succeeds, or ``(None, reason)``: once a process."""
    global _loaded
    if _loaded is not None and environ is None:
        return _loaded
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV_VAR}={value!r}: expected 1 (the compiled kernels where a C "
                         f"compiler builds them, the default) or 0 (NumPy only: im2col + "
                         f"BLAS)")
    if value == "0":
        result = (None, f"off ({ENV_VAR}=0): NumPy only, im2col + BLAS")
    else:
        try:
            path = build(cache_dir(env), env)
            result = (Kernels(ctypes.CDLL(str(path)), path),
                      f"compiled kernels: the direct convolution, max pooling, ReLU ({path})")
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            result = (None, f"NumPy only, im2col + BLAS: the kernels are not built ({e})")
    if environ is None:
        _loaded = result
    return result
