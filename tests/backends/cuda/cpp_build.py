"""CUDA kernel sources built for the CPU, for the kernel tests that run without a GPU.

A kernel written as a grid-stride loop, or whose threads share nothing,
computes on the host what it computes on the GPU when its source is
compiled as C++ with the CUDA names defined (each test file's prelude) and
its grid walked in order. ``build`` compiles such a source once per test
module; ``c_args`` passes the NumPy arrays and scalars that the backends'
``*_args`` functions pack, as CuPy would.
"""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

COMPILER = shutil.which("g++") or shutil.which("c++")
needs_compiler = pytest.mark.skipif(COMPILER is None,
                                    reason="no C++ compiler to build the kernels")
C_TYPES = {"float32": "float", "float64": "double"}
C_SCALARS = {np.int32: ctypes.c_int32, np.int64: ctypes.c_int64, np.float32: ctypes.c_float,
             np.float64: ctypes.c_double}


def build(folder, source):
    """``source`` compiled into a shared library in ``folder``, loaded; warnings are errors."""
    path = folder / "kernels.cpp"
    path.write_text(source)
    library = folder / "kernels.so"
    done = subprocess.run([COMPILER, "-O1", "-shared", "-fPIC", "-Wall", "-Werror",
                           "-Wno-unknown-pragmas",  # CUDA's #pragma unroll
                           "-o", str(library), str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(str(library))


def c_args(args):
    """Kernel arguments as ctypes: arrays by address, NumPy scalars by their C type."""
    return [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray)
            else C_SCALARS[type(a)](a) for a in args]
