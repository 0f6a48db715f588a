"""The host kernels' build: compile ``kernels/xpnet_host.c`` on first use, keep it privately, bind it.

The kernels are C of ours in ``backends/host/kernels/`` (``conv.h``: the direct
convolution; ``relu.h``; ``pool.h``: 2 x 2 max pooling), each written once for a type
``T`` and included by ``xpnet_host.c`` for float and double. :func:`load` compiles that
unit with the system's C compiler (``cc -O3 -march=native``, or ``$CC``) into the cache
folder, once per source, compiler, flags and CPU, and loads it with ctypes, which lets
go of the GIL during a call (so the pool's threads run parts of the work at once).

**The cache runs nothing it cannot trust.** A shared library runs code the moment it is
loaded, so a library is loaded only where it and its folder belong to the user running
xpnet and neither is writable by anyone else: the folder is made private (0700), a
library found there is checked before it is loaded, and where the folder given
(``XPNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/xpnet`` or ``~/.cache/xpnet``) fails those
checks, xpnet builds into a private folder of its own (a fresh temporary one) and says
so. With no compiler, a failed build or ``XPNET_HOST_KERNELS=0``, :func:`load` returns
None with the reason and the host runs its NumPy code (im2col + BLAS).

**The calling convention is written once**, in :data:`SIGNATURES`: each kernel's
parameters, their names and C types as the headers declare them. :class:`Kernels` binds
the ctypes functions from it and is called by keyword (``kernels.conv["float32"](x=...,
xs=...)``), so a missing, extra or misnamed argument is an error, never memory read
at the wrong place; ``tests/backends/host/test_kernels.py`` parses the headers'
prototypes and fails on any difference from the table.
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

from backends.trust import open_trusted, private_folder, untrusted

FLAGS = ("-O3", "-march=native", "-fno-strict-aliasing", "-shared", "-fPIC")
# grid positions a dW pass sums at a time: the chunk's rows of dout and of the input stay
# in cache while every filter tap's product is added (kernels/conv.h, xpnet_conv_dw)
DW_CHUNK = 2048
UNIT = "xpnet_host.c"  # the compilation unit; it includes the other files
FLOAT_TYPES = ("float32", "float64")

# Each kernel as its header declares it (without the type suffix NAME() adds): the
# parameters in order, ``(C type, name)``; ``T`` is float or double.
SIGNATURES = {
    "xpnet_conv": (
        ("const T*", "x"), ("long", "xs"), ("const T*", "w"), ("const T*", "b"), ("int", "F"),
        ("int", "C"), ("int", "KH"), ("int", "KW"), ("long", "hp"), ("long", "wp"),
        ("long", "oh"), ("long", "ow"), ("long", "cells"), ("T*", "out"), ("long", "os"),
        ("long", "lo"), ("long", "hi")),
    "xpnet_conv_dw": (
        ("const T*", "d"), ("long", "ds"), ("const T*", "x"), ("long", "xs"), ("int", "F"),
        ("int", "C"), ("int", "KH"), ("int", "KW"), ("long", "wp"), ("T*", "dw"),
        ("long", "lo"), ("long", "hi"), ("long", "chunk")),
    "xpnet_conv_px": (
        ("const T*", "x"), ("long", "xs"), ("const T*", "wt"), ("const T*", "b"),
        ("int", "F"), ("int", "C"), ("int", "KH"), ("int", "KW"), ("long", "hp"),
        ("long", "wp"), ("long", "oh"), ("long", "ow"), ("T*", "out"), ("long", "os"),
        ("long", "lo"), ("long", "hi")),
    "xpnet_conv_dw_px": (
        ("const T*", "d"), ("int", "F"), ("const T*", "x"), ("long", "xs"), ("int", "C"),
        ("int", "KH"), ("int", "KW"), ("long", "hp"), ("long", "wp"), ("long", "oh"),
        ("long", "ow"), ("T*", "dwt"), ("long", "lo"), ("long", "hi")),
    "xpnet_relu": (
        ("const T*", "x"), ("T*", "y"), ("unsigned char*", "keep"), ("long", "n")),
    "xpnet_max_pool": (
        ("const T*", "x"), ("T*", "out"), ("signed char*", "arg"), ("long", "h"),
        ("long", "w"), ("long", "lo"), ("long", "hi")),
    "xpnet_max_pool_grad": (
        ("const T*", "d"), ("const signed char*", "arg"), ("T*", "dx"), ("long", "h"),
        ("long", "w"), ("long", "lo"), ("long", "hi")),
}
# the library's constants, ``int f(void)`` each, in prelude.h
CONSTANTS = ("xpnet_block_floats", "xpnet_block_doubles", "xpnet_vector_bytes")


def ctype_of(c_type):
    """The ctypes type a C parameter type is passed as: pointers by address."""
    if c_type.endswith("*"):
        return ctypes.c_void_p
    return {"long": ctypes.c_long, "int": ctypes.c_int}[c_type]


def sources():
    """``{file name: text}`` of every kernel source, read from the installed package."""
    folder = importlib.resources.files("backends.host") / "kernels"
    return {f.name: f.read_text() for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith((".c", ".h"))}


class Kernel:
    """One compiled function, called by keyword with exactly its parameters' names."""

    __slots__ = ("function", "names", "name")

    def __init__(self, library, name, signature):
        self.name = name
        self.function = getattr(library, name)
        self.function.argtypes = [ctype_of(c_type) for c_type, _ in signature]
        self.function.restype = None
        self.names = tuple(n for _, n in signature)

    def __call__(self, **args):
        try:
            values = [args[n] for n in self.names]
        except KeyError as e:
            raise TypeError(f"{self.name}: missing argument {e.args[0]!r}; it takes "
                            f"{', '.join(self.names)}") from None
        if len(args) != len(self.names):
            extra = sorted(set(args) - set(self.names))
            raise TypeError(f"{self.name}: no parameter {', '.join(map(repr, extra))}; it "
                            f"takes {', '.join(self.names)}")
        self.function(*values)


class Kernels:
    """The compiled library: ``conv``, ``dw``, ``conv_px``, ``dw_px``, ``relu``, ``max_pool``
    and ``max_pool_grad``, each a dict of :class:`Kernel` by dtype name, and each dtype's
    block size for ``conv``."""

    ATTRIBUTES = {"conv": "xpnet_conv", "dw": "xpnet_conv_dw", "conv_px": "xpnet_conv_px",
                  "dw_px": "xpnet_conv_dw_px", "relu": "xpnet_relu",
                  "max_pool": "xpnet_max_pool", "max_pool_grad": "xpnet_max_pool_grad"}

    def __init__(self, library, path):
        self.path = path
        for attribute, name in self.ATTRIBUTES.items():
            setattr(self, attribute, {dtype: Kernel(library, f"{name}_{dtype}", SIGNATURES[name])
                                      for dtype in FLOAT_TYPES})
        # outputs a block computes: grids are rounded up to whole blocks
        self.block = {"float32": library.xpnet_block_floats(),
                      "float64": library.xpnet_block_doubles()}
        self.vector_bytes = library.xpnet_vector_bytes()


def default_cache_dir(environ=None):
    """``$XDG_CACHE_HOME/xpnet``, else ``~/.cache/xpnet``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "xpnet"


def _cpu_signature():
    # -march=native code is only good for this CPU: a cache shared between
    # machines (a network home folder) must not hand one CPU's build to another. What
    # the build may use is the instruction sets (x86's "flags", Arm's "Features"); a model
    # name alone, such as a virtual machine's "Intel(R) Xeon(R) Processor", is shared by
    # CPUs that differ in them (one with AVX-512, one without: an illegal instruction).
    # The first processor's lines of each, as /proc/cpuinfo lists them.
    lines = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip() and lines:
                    break  # the end of the first processor's block
                if line.startswith(("flags", "Features", "model name")):
                    lines.append(line)
    except OSError:
        pass
    return "".join(lines) or platform.processor() + platform.machine()


def compiler(environ=None):
    """The C compiler's path: ``$CC``, else cc, gcc or clang on PATH; None if none."""
    environ = os.environ if environ is None else environ
    cc = environ.get("CC")
    if cc:
        return shutil.which(cc)
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def library_name(cc, flags=FLAGS):
    """The file name of the build of today's sources with ``cc`` and ``flags`` on this CPU."""
    key = hashlib.sha256("\n".join([*(f"{name}\n{text}" for name, text in sources().items()),
                                    cc, " ".join(flags), _cpu_signature()]).encode())
    return f"xpnet_host-{key.hexdigest()[:16]}.so"


def build(folder, cc, flags=FLAGS):
    """The kernels' shared library in ``folder`` (a private folder: :func:`private_folder`),
    compiled with ``cc`` and ``flags`` unless a trusted build is there already: its path.

    Written to a temporary name and renamed, so a concurrent or interrupted build never
    leaves a half-written library behind. ``RuntimeError`` with the compiler's message
    where it fails, or where a file of the library's name is there but not to be trusted.
    """
    folder = pathlib.Path(folder)
    path = folder / library_name(cc, flags)
    if os.path.lexists(path):
        why = untrusted(path, "file")
        if why is None:
            return path
        raise RuntimeError(f"a library of the kernels' name is not to be trusted: {why}")
    texts = sources()
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
        os.chmod(out, 0o700)
        os.replace(out, path)
    return path


def load_library(path):
    """The shared library at ``path``, loaded as the very file judged trusted
    (:func:`backends.trust.open_trusted`): on Linux through ``/proc/self/fd``, so that no
    file put at the path after the check (an ancestor folder that others may write lets
    them rename the folder itself) is what ``dlopen`` maps; elsewhere by its path, just
    after the check. ``RuntimeError`` saying why where the file is not to be trusted."""
    opened, why = open_trusted(path)
    if opened is None:
        raise RuntimeError(f"a library of the kernels' name is not to be trusted: {why}")
    with opened:
        if not os.path.isdir("/proc/self/fd"):
            return ctypes.CDLL(str(path))
        # a descriptor of its own, never closed: dlopen knows a library by the name it was
        # loaded under, and ctypes never unloads one, so a number closed and reused would
        # name this library again when another file is loaded through it (one descriptor
        # for each library loaded: a handful in a process)
        fd = os.dup(opened.fileno())
    return ctypes.CDLL(f"/proc/self/fd/{fd}")


def load(settings, environ=None):
    """``(Kernels, reason)``, or ``(None, reason)`` where the host runs its NumPy code:
    ``settings`` say whether to (``host_kernels``) and where (``cache_dir``); ``environ``
    gives ``CC``, ``XDG_CACHE_HOME`` and ``HOME``. Builds where needed (seconds, once)."""
    if not settings.host_kernels:
        return None, "off (XPNET_HOST_KERNELS=0): NumPy only, im2col + BLAS"
    cc = compiler(environ)
    if cc is None:
        return None, ("NumPy only, im2col + BLAS: the kernels are not built (no C compiler: "
                      "cc, gcc or clang on PATH, or $CC)")
    wanted = pathlib.Path(settings.cache_dir) if settings.cache_dir else \
        default_cache_dir(environ)
    folder, why = private_folder(wanted)
    note = ""
    try:
        if folder is not None:
            try:
                path = build(folder, cc)
                library = load_library(path)
            except RuntimeError as e:
                if "not to be trusted" not in str(e):
                    raise
                folder, why = None, str(e)
        if folder is None:  # a private folder of our own, for this process
            own = tempfile.mkdtemp(prefix="xpnet-kernels-")
            note = (f"; built in a private folder of xpnet's own, {own}, removed once "
                    f"loaded, since the cache folder will not do: {why}")
            try:
                path = build(own, cc)
                library = load_library(path)
            finally:  # the loaded library stays mapped; nothing is left in the temp folder
                shutil.rmtree(own, ignore_errors=True)
        return (Kernels(library, path),
                f"compiled kernels: the direct convolution, max pooling, ReLU ({path}){note}")
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return None, f"NumPy only, im2col + BLAS: the kernels are not built ({e})"
