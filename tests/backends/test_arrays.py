"""backends/arrays.py and backends/dispatch.py: which namespace and operations an array gets."""

import numpy as np

import backends
from backends import arrays, dispatch


def test_numpy_scalars_and_python_values_count_as_numpy():
    for value in (np.float32(1.5), np.int64(3), np.bool_(True), 2.0, 7, None):
        assert backends.array_namespace(value) is np, type(value)
        assert backends.ops_for(value) is backends.ops_for(np.ones(2)), type(value)
    assert backends.array_namespace(np.float32(1.0), np.ones(2)) is np


def test_an_arrays_namespace_and_operations_are_its_types_and_remembered(backend):
    x = backend.asarray(np.ones((2, 3), dtype=np.float32))
    xp = backends.array_namespace(x)
    ops = backends.ops_for(x)
    assert xp is backend.xp or backend.name == "cupy"  # CuPy: its own module or compat's
    assert arrays._namespace_of_type[type(x)] is xp
    y = backend.asarray(np.zeros(4, dtype=np.float64))  # another dtype and shape, same type
    assert backends.array_namespace(y) is xp and backends.ops_for(y) is ops
    if backend.name not in ("numpy", "cupy"):  # the wings are chosen before the memory
        assert dispatch._standard_of_type[type(x)] is ops


def test_the_standard_is_chosen_for_numpy_too_when_the_fast_paths_are_off():
    x = np.ones(3)
    wing = backends.ops_for(x)
    previous = dispatch.use_fast_paths(False)
    try:
        standard = backends.ops_for(x)
        assert standard is not wing and standard.name == "standard"
    finally:
        dispatch.use_fast_paths(previous)
    assert backends.ops_for(x) is wing
