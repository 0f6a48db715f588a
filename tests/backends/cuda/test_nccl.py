"""backends/cuda/nccl.py on a GPU: NCCL's all-gather and the rank-order sum.

One process can hold a world of one; the many-rank paths run under mpiexec in
tests/framework/test_distributed.py (NCCL needs a GPU a rank).
"""

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
if not cupy.is_available():
    pytest.skip("no CUDA device for CuPy", allow_module_level=True)
try:
    from backends.cuda import nccl
except Exception as e:  # CuPy without NCCL's library
    pytest.skip(f"NCCL does not load here: {e}", allow_module_level=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_world_of_one_sums_to_its_own_buffer_on_the_device(dtype):
    device = cupy.cuda.Device()
    total = nccl.RankOrderSum(1, 0, nccl.unique_id(), device)
    try:
        flat = cupy.arange(1000, dtype=dtype) / 7
        got = total.sum_flat(flat)
        assert isinstance(got, cupy.ndarray) and got.dtype == flat.dtype
        assert got.data.ptr != flat.data.ptr  # a new buffer: the gradients are not aliased
        np.testing.assert_array_equal(cupy.asnumpy(got), cupy.asnumpy(flat))
        with pytest.raises(TypeError, match="float32 or float64"):
            total.sum_flat(cupy.arange(3, dtype="int32"))
    finally:
        total.close()


def test_the_version_reads_as_text():
    major, minor, _ = nccl.version().split(".")
    assert int(major) >= 2 and int(minor) >= 0
