"""The old import path of :mod:`backends.ops.strided` (the NumPy-API family of the
operations), kept so that existing imports keep working."""

from backends.ops.strided import StridedOps, empty_in_order, memory_order  # noqa: F401
