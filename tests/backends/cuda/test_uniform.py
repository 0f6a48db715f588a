"""backends/cuda/kernels/uniform.cu on the CPU: compiled as C++, against the array code.

The kernel is a grid-stride loop, so one host "thread" walks every element;
its numbers must equal :meth:`backends.ops.StandardOps.uniform`'s bit for bit,
since dropout's masks are promised the same on every backend. On a GPU,
tests/backends/test_ops.py and tests/framework/layers/test_dropout.py compare the
kernel itself.
"""

import numpy as np
import pytest

from backends import splitmix
from backends.cuda import uniform
from backends.cuda.sources import source
from backends.ops import StandardOps
from tests.backends.cuda.cpp_build import build, c_args, needs_compiler

pytestmark = needs_compiler

PRELUDE = r'''
struct xpnet_dim { long long x; };
static const xpnet_dim blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__
'''


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return build(tmp_path_factory.mktemp("uniform"), PRELUDE + source("uniform.cu"))


@pytest.mark.parametrize("key, counter, shape", [
    (0, 0, (5,)), (2**63 - 1, 7, (100, 50)), (123456789, 2**64 - 1, (3, 4, 5)), (42, 1, (1,))])
def test_the_kernel_draws_the_array_codes_numbers(library, key, counter, shape):
    key = np.array([key], dtype=np.uint64)
    counter = np.array([counter], dtype=np.uint64)
    want = StandardOps(np).uniform(key, counter, shape)
    got = np.full(shape, np.nan)
    library.xpnet_uniform(*c_args(uniform.launch_args(key, counter, got)))
    np.testing.assert_array_equal(got, want)
    assert 0 <= got.min() and got.max() < 1


def test_the_kernel_draws_from_an_index_the_part_of_a_whole_draw(library):
    key, counter = np.array([77], dtype=np.uint64), np.array([9], dtype=np.uint64)
    whole = StandardOps(np).uniform(key, counter, (12, 5))
    got = np.full((4, 5), np.nan)
    library.xpnet_uniform(*c_args(uniform.launch_args(key, counter, got, first=7 * 5)))
    np.testing.assert_array_equal(got, whole[7:11])


def test_the_kernel_has_the_generators_constants():
    text = source("uniform.cu")
    for constant in (splitmix.GOLDEN, splitmix.MIX1, splitmix.MIX2):
        assert f"0x{constant:X}ULL" in text
