"""The CUDA wing's kernel sources, read from ``backends/cuda/kernels/*.cu``, and their types.

Imports no CuPy: the tests build these same files as C++ on the CPU and
compile them with NVRTC without a GPU (``tests/backends/cuda/``).
"""

import functools
import importlib.resources

import numpy

_C_TYPES = {"float32": "float", "float64": "double", "int8": "signed char",
            "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
            "int32": "int", "uint32": "unsigned int", "int64": "long long",
            "uint64": "unsigned long long"}


@functools.lru_cache(maxsize=None)
def source(name):
    """The text of ``kernels/<name>`` (``"conv.cu"``), as installed with the package."""
    return (importlib.resources.files("backends.cuda") / "kernels" / name).read_text()


def names():
    """Every kernel file's name."""
    folder = importlib.resources.files("backends.cuda") / "kernels"
    return sorted(f.name for f in folder.iterdir() if f.name.endswith(".cu"))


def c_type(dtype):
    """The CUDA C type of a NumPy dtype; ``TypeError`` naming it for the others."""
    name = numpy.dtype(dtype).name
    if name not in _C_TYPES:
        raise TypeError(f"no CUDA kernel for dtype {name}; expected one of {', '.join(_C_TYPES)}")
    return _C_TYPES[name]


def with_defines(text, **types):
    """``text`` behind one ``#define`` per keyword (``T="float"``): how each kernel is built."""
    return "".join(f"#define {k} {v}\n" for k, v in types.items()) + text


def element_strides(a):
    """``a``'s strides in elements, as int64 scalars: how every kernel here takes them."""
    return tuple(numpy.int64(s // a.itemsize) for s in a.strides)
