"""The operations the layers route: one contract, the standard's reference, the strided family.

:mod:`~backends.ops.contract`
    :class:`Ops`, the abstract contract: what each operation computes, shapes and
    dtypes in and out, what may be a view.
:mod:`~backends.ops.reference`
    :class:`StandardOps`, the contract on the Array API standard alone: what any
    library without a wing computes with, and the reference of every test.
:mod:`~backends.ops.strided`
    :class:`StridedOps`, NumPy's API (strided views, ``out=``), which the NumPy and
    CuPy wings (:mod:`backends.host.ops`, :mod:`backends.cuda.ops`) build on.
"""

from backends.ops.contract import Ops
from backends.ops.reference import StandardOps, window_slices
from backends.ops.strided import StridedOps, empty_in_order, memory_order

__all__ = ["Ops", "StandardOps", "StridedOps", "window_slices", "empty_in_order",
           "memory_order"]
