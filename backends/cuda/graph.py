"""Recording GPU work once and replaying it as one CUDA graph: the device's mechanics.

At batch 100 the book's network is a few microseconds of GPU arithmetic
behind twenty-odd launches that CuPy issues one by one from Python. A CUDA
graph records those launches once and replays them with one call. What a
training step needs from the device for that lives here; the step itself
(gradient and update, what is put back after recording) is
:class:`framework.steps.GraphStep`'s.

* :class:`Feed`: a graph's kernel arguments are fixed at capture, so a batch
  offset passed from the host would replay step 0 forever. The batch is
  gathered inside the graph by ``xpnet_gather``, which reads the step
  number from a device counter and the sample indices from an order array
  refreshed once per epoch; ``xpnet_record`` copies the loss into
  ``losses[counter]`` and advances the counter (``kernels/graph.cu``).
* :func:`capture`: runs the work once for real (to compile the kernels and
  fill the pool), records the second run on a stream of its own, with
  temporaries from a memory pool of the graph's own that nothing else
  allocates from (the replays write into those addresses), and with the
  matrix products where :meth:`backends.cuda.ops.CupyOps.recording` sends them,
  since CuPy refuses its cuBLAS calls during capture (cupy issue #6290).
"""

import cupy
import numpy

from backends.cuda.sources import c_type

THREADS = 256


class Feed:
    """A step's data on the device: batches gathered at a device counter, losses recorded.

    ``x (N, ...)`` and integer labels ``t (N,)`` are the dataset on the GPU;
    each epoch :meth:`start_epoch` writes its order, then each step gathers
    ``batch`` samples into :attr:`x_batch`, :attr:`t_batch` and records its
    loss into :attr:`losses` at the counter. ``kernels``: the
    :class:`backends.cuda.compiler.KernelCache` of the operations the step runs on.
    """

    def __init__(self, x, t, batch, steps_per_epoch, size, loss_dtype, kernels):
        if x.ndim < 2 or t.ndim != 1 or t.dtype.kind not in "iu" or not x.flags.c_contiguous:
            raise ValueError(f"CUDA graph step: needs contiguous (N, ...) data and integer "
                             f"labels, got x {tuple(x.shape)} and t {tuple(t.shape)} {t.dtype}")
        self.x, self.t, self.batch = x, t, batch
        index_dtype = numpy.int32 if size < 2**31 else numpy.int64
        self.order = cupy.zeros(max(size, steps_per_epoch * batch), dtype=index_dtype)
        self.counter = cupy.zeros(1, dtype=numpy.int32)
        self.losses = cupy.zeros(steps_per_epoch, dtype=loss_dtype)
        self.sample_size = x[0].size  # images are gathered as rows of their pixels
        self.x_batch = cupy.empty((batch,) + tuple(x.shape[1:]), dtype=x.dtype)
        self.t_batch = cupy.empty(batch, dtype=t.dtype)
        self._gather = kernels.get("graph.cu", "xpnet_gather", T=c_type(x.dtype),
                                   L=c_type(t.dtype), I=c_type(index_dtype))
        self._record = kernels.get("graph.cu", "xpnet_record", T=c_type(loss_dtype),
                                   L=c_type(t.dtype), I=c_type(index_dtype))

    def gather(self):
        """The batch at the counter into :attr:`x_batch` and :attr:`t_batch`."""
        n = self.batch * self.sample_size
        self._gather((-(-n // THREADS),), (THREADS,),
                     (self.x, self.t, self.order, self.counter, self.x_batch, self.t_batch,
                      numpy.int32(self.batch), numpy.int32(self.sample_size)))

    def record(self, loss):
        """``losses[counter] = loss``, then the counter on by one."""
        if getattr(loss, "dtype", None) != self.losses.dtype:
            raise TypeError(f"CUDA graph step: the loss is {type(loss).__name__} "
                            f"{getattr(loss, 'dtype', '')}, expected a {self.losses.dtype} "
                            f"array on the GPU")
        self._record((1,), (1,), (loss, self.losses, self.counter))

    def start_epoch(self, order, first=0):
        """Use ``order`` (the epoch's sample indices, on the device) from step ``first``."""
        if order.size > self.order.size:
            raise ValueError(f"CUDA graph step: {order.size} indices for a buffer of "
                             f"{self.order.size}")
        self.order[:order.size] = order
        self.counter.fill(first)


class Graph:
    """A recorded graph with the memory pool its replays write into."""

    def __init__(self, graph, pool, stream):
        self.graph, self.pool, self.stream = graph, pool, stream

    def launch(self):
        """One replay, queued on the current stream; nothing waits."""
        self.graph.launch()

    def pool_bytes(self):
        """Bytes held by the graph's own memory pool (its temporaries)."""
        return self.pool.total_bytes()


def synchronize():
    """Wait for all of the current device's work."""
    cupy.cuda.Device().synchronize()


def capture(body, ops, own_gemm=True):
    """Run ``body()`` once, then record a second run of it: a :class:`Graph`.

    ``ops`` are the :class:`backends.cuda.ops.CupyOps` the body runs on: their products
    go where ``graph_gemm`` says during both runs (``own_gemm=False`` leaves them on
    CuPy's cuBLAS instead, for ``scripts/graph_probe.py``). Whatever the two runs
    changed on the device is the caller's to put back.
    """
    pool = cupy.cuda.MemoryPool()
    stream = cupy.cuda.Stream(non_blocking=True)
    synchronize()  # what the caller wrote, before the other stream reads it
    try:
        with ops.recording(own_gemm), cupy.cuda.using_allocator(pool.malloc), stream:
            body()  # warm-up: compiles the kernels and fills the graph's pool
            stream.synchronize()
            stream.begin_capture()
            try:
                body()
            except BaseException:
                try:
                    stream.end_capture()
                except Exception:
                    pass  # the capture is broken anyway; report the first error
                raise
            graph = stream.end_capture()
            stream.synchronize()
    finally:
        synchronize()
    return Graph(graph, pool, stream)
