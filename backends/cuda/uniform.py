"""Dropout's generator on the GPU (``kernels/uniform.cu``): its launch arguments.

As array code the counter-based generator of :mod:`backends.splitmix` is
some 25 launches a draw (three SplitMix64 finalisers of five operations
each, the index walk, the conversion); a DeepConvNet step draws twice. The
kernel is one launch, in the same wrapping 64-bit arithmetic, so the
numbers are the same bit for bit on every backend.

This module does not import CuPy: ``tests/backends/cuda/test_uniform.py``
builds the kernel as C++ and compares it with the array code on the CPU.
"""

import numpy


def launch_args(key, counter, out, first=0):
    """The kernel's arguments: ``key`` and ``counter`` ((1,) uint64), ``out`` float64, and
    the index of its first number."""
    return key, counter, out, numpy.int64(out.size), numpy.int64(first)
