"""The CUDA kernel of :meth:`backends.ops.Ops.uniform`, dropout's counter-based generator.

As array code the generator is some 25 launches a draw (three SplitMix64
finalisers of five operations each, the index walk, the conversion); a
DeepConvNet step draws twice. Here it is one kernel: each element ``i``
gets ``mix(i * GOLDEN + mix(key ^ mix(counter)))``, its top 53 bits as a
double in [0, 1), in the same wrapping 64-bit arithmetic as the array
code, so the numbers are the same bit for bit on every backend (the
dropout masks are, and ``tests/test_dropout.py`` checks it on a GPU).

This module does not import CuPy: ``tests/test_random_kernels.py`` builds
:data:`SOURCE` as C++ and compares it with the array code on the CPU.
"""

import numpy

from backends.ops import _GOLDEN, _MIX1, _MIX2

SOURCE = r'''
__device__ inline unsigned long long xpnet_mix64(unsigned long long z)
{
    z = (z ^ (z >> 30)) * 0x%(mix1)XULL;
    z = (z ^ (z >> 27)) * 0x%(mix2)XULL;
    return z ^ (z >> 31);
}

// out[i] = the top 53 bits of mix(i * GOLDEN + mix(key ^ mix(counter))) / 2^53
extern "C" __global__ void xpnet_uniform(const unsigned long long* key,
                                         const unsigned long long* counter, double* out,
                                         long long size)
{
    const unsigned long long start = xpnet_mix64(key[0] ^ xpnet_mix64(counter[0]));
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const unsigned long long z = xpnet_mix64((unsigned long long)i * 0x%(golden)XULL + start);
        out[i] = (double)(z >> 11) * (1.0 / 9007199254740992.0);  // 2^-53: exact
    }
}
''' % {"mix1": _MIX1, "mix2": _MIX2, "golden": _GOLDEN}


def launch_args(key, counter, out):
    """The kernel's arguments: ``key`` and ``counter`` ((1,) uint64), ``out`` float64."""
    return key, counter, out, numpy.int64(out.size)
