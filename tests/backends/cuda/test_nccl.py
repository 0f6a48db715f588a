"""backends/cuda/nccl.py: NCCL's all-gather and the rank-order sum.

One process can hold a world of one; the many-rank paths run under mpiexec in
tests/framework/test_distributed.py (NCCL needs a GPU a rank). Where CuPy and
NCCL's library load but no GPU is present (``pip install cupy-cuda13x
nvidia-nccl-cu13`` on any Linux machine), the calls into CuPy's binding that
need no device still run.
"""

import contextlib
import pickle

import numpy as np
import pytest

from framework.testing.plugin import unusable

cupy = pytest.importorskip("cupy")
try:
    from backends.cuda import nccl
except Exception as e:  # CuPy without NCCL's library
    pytest.skip(f"NCCL does not load here: {e}", allow_module_level=True)
needs_gpu = pytest.mark.skipif(not cupy.is_available(), reason=unusable("cupy", "no CUDA device"))


def test_the_id_travels_and_is_what_the_communicator_takes():
    """The id goes from rank 0 to the others through MPI's pickle, and CuPy's
    NcclCommunicator must take it as it comes (bytes in CuPy 14, a tuple in CuPy 13:
    converting it broke one or the other). Without a GPU NCCL then fails to start,
    but only after the arguments were accepted."""
    uid = pickle.loads(pickle.dumps(nccl.unique_id()))
    try:
        made = nccl.RankOrderSum(1, 0, uid, contextlib.nullcontext())
    except Exception as e:  # without a GPU, NCCL's own error: past the argument checks
        assert not isinstance(e, TypeError), e
        assert not cupy.is_available(), e
    else:
        made.close()


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_world_of_one_sums_to_its_own_buffer_on_the_device(dtype):
    device = cupy.cuda.Device()
    total = nccl.RankOrderSum(1, 0, nccl.unique_id(), device)
    try:
        flat = cupy.arange(1000, dtype=dtype) / 7
        got = total.all_reduce(flat)
        assert isinstance(got, cupy.ndarray) and got.dtype == flat.dtype
        assert got.data.ptr != flat.data.ptr  # a new buffer: the gradients are not aliased
        np.testing.assert_array_equal(cupy.asnumpy(got), cupy.asnumpy(flat))
        with pytest.raises(TypeError, match="float32 or float64"):
            total.all_reduce(cupy.arange(3, dtype="int32"))
    finally:
        total.close()


def test_the_version_reads_as_text():
    major, minor, _ = nccl.version().split(".")
    assert int(major) >= 2 and int(minor) >= 0


@needs_gpu
def test_the_gathered_rows_are_added_in_rank_order_on_the_device():
    """The NCCL path's sum is the host's (backends.arrays.sum_in_rank_order) on CuPy's rows:
    1.0, 1e16 and -1e16 give 0.0 in rank order and 1.0 reversed, as on the host."""
    from backends.arrays import sum_in_rank_order
    rows = cupy.asarray([[1.0], [1e16], [-1e16]])
    assert cupy.asnumpy(sum_in_rank_order(rows)).tolist() == [0.0]
    assert cupy.asnumpy(sum_in_rank_order(rows[::-1].copy())).tolist() == [1.0]
