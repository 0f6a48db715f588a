"""Which library an array belongs to, and moving arrays to the host: the lowest floor.

Everything in ``backends`` that looks at an array's type imports this
module and nothing above it. It never imports CuPy: a CuPy array is told
by its type's module name, so a machine without a GPU never loads CuPy.
"""

import sys

import numpy


def is_device_array(x):
    """True for a CuPy array: its values can only be read by synchronising with the GPU."""
    # Called several times per layer per step: a NumPy array answers at the
    # first comparison, without building the module-name string.
    if type(x) is numpy.ndarray:
        return False
    return type(x).__module__.split(".", 1)[0] == "cupy"


def get_array_module(*arrays):
    """``numpy`` or ``cupy``, whichever the given arrays live in.

    Only looks at the arrays' types, so it never imports CuPy on a machine
    where no CuPy array exists. Python scalars and NumPy arrays give NumPy.
    """
    for a in arrays:
        if is_device_array(a):
            return sys.modules["cupy"]
    return numpy


def to_numpy(x):
    """A host ``numpy.ndarray`` (or NumPy scalar) from an array of either backend."""
    if is_device_array(x):
        return x.get()
    return numpy.asarray(x)


def check_same_backend(where, **arrays):
    """Raise ``TypeError`` naming ``where`` if the arrays mix host and device memory."""
    first = None
    for a in arrays.values():  # the common case, all of one type, without building a report
        if first is None:
            first = type(a)
        elif type(a) is not first:
            break
    else:
        return
    kinds = {name: ("cupy" if is_device_array(a) else "numpy")
             for name, a in arrays.items() if hasattr(a, "shape")}
    if len(set(kinds.values())) > 1:
        detail = ", ".join(f"{name} is {kind}" for name, kind in kinds.items())
        raise TypeError(f"{where}: arrays from different backends ({detail}); move them "
                        f"to one backend first (backends.to_device / backends.to_numpy)")


def host_rng(seed=None):
    """A seeded NumPy generator on the host.

    Parameters are drawn here and then sent to the backend, so the same seed
    gives the same network on the CPU and on the GPU.
    """
    return numpy.random.default_rng(seed)
