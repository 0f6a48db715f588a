"""backends.random_kernels on the CPU: the uniform kernel compiled as C++, against the array code.

The kernel is a grid-stride loop, so one host "thread" walks every element;
its numbers must equal :meth:`backends.ops.Ops.uniform`'s bit for bit,
since dropout's masks are promised the same on every backend. On a GPU,
tests/test_ops.py and tests/test_dropout.py compare the kernel itself.
"""

import numpy as np
import pytest

from backends import random_kernels
from backends.ops import Ops
from tests.host_kernels import build, c_args, needs_compiler

pytestmark = needs_compiler

PRELUDE = r'''
struct xpnet_dim { long long x; };
static const xpnet_dim blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__
'''


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return build(tmp_path_factory.mktemp("uniform"), PRELUDE + random_kernels.SOURCE)


@pytest.mark.parametrize("key, counter, shape", [
    (0, 0, (5,)), (2**63 - 1, 7, (100, 50)), (123456789, 2**64 - 1, (3, 4, 5)), (42, 1, (1,))])
def test_the_kernel_draws_the_array_codes_numbers(library, key, counter, shape):
    key = np.array([key], dtype=np.uint64)
    counter = np.array([counter], dtype=np.uint64)
    want = Ops(np).uniform(key, counter, shape)
    got = np.full(shape, np.nan)
    library.xpnet_uniform(*c_args(random_kernels.launch_args(key, counter, got)))
    np.testing.assert_array_equal(got, want)
    assert 0 <= got.min() and got.max() < 1
