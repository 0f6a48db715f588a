"""Recording a step once and replaying it as one CUDA graph, on PyTorch's CUDA tensors.

The same mechanics as :mod:`backends.cuda.graph` (CuPy's), with PyTorch's own
``torch.cuda.CUDAGraph`` (ROCm's builds record HIP graphs through the same API); the
step itself, what recording must put back and when to record again, is
:class:`framework.steps.GraphStep`'s, for both libraries.

* :class:`Feed`: a graph's arguments are fixed at capture, so the batch is gathered
  inside it: the step number is a device counter, the epoch's order a device array
  written once per epoch, and ``index_select`` gathers the samples at
  ``order[counter * batch + arange(batch)]`` into fixed buffers; the loss is copied
  into ``losses[counter]`` and the counter advanced, all on the device. It runs on any
  of PyTorch's devices (the CPU tests check its bookkeeping against the eager
  batches); only :func:`capture` needs CUDA.
* :func:`capture`: runs the work once on a side stream (kernel selection, the caching
  allocator's first blocks), then records a second run into a graph whose
  temporaries come from a memory pool of its own, as PyTorch's ``torch.cuda.graph``
  does.
"""

import torch


class Feed:
    """A step's data on the device: batches gathered at a device counter, losses recorded
    (the interface of :class:`backends.cuda.graph.Feed`; ``kernels`` is not used)."""

    def __init__(self, x, t, batch, steps_per_epoch, size, loss_dtype, kernels=None):
        if x.ndim < 2 or t.ndim != 1 or t.dtype.is_floating_point or t.dtype == torch.bool \
                or not x.is_contiguous():
            raise ValueError(f"CUDA graph step: needs contiguous (N, ...) data and integer "
                             f"labels, got x {tuple(x.shape)} and t {tuple(t.shape)} {t.dtype}")
        device = x.device
        self.x, self.t, self.batch = x, t, batch
        self.order = torch.zeros(max(size, steps_per_epoch * batch), dtype=torch.int64,
                                 device=device)
        self.counter = torch.zeros(1, dtype=torch.int64, device=device)
        self.losses = torch.zeros(steps_per_epoch, dtype=loss_dtype, device=device)
        self.x_batch = torch.empty((batch,) + tuple(x.shape[1:]), dtype=x.dtype, device=device)
        self.t_batch = torch.empty(batch, dtype=t.dtype, device=device)
        self._offsets = torch.arange(batch, dtype=torch.int64, device=device)

    def gather(self):
        """The batch at the counter into :attr:`x_batch` and :attr:`t_batch`."""
        index = self.order.index_select(0, self.counter * self.batch + self._offsets)
        torch.index_select(self.x, 0, index, out=self.x_batch)
        torch.index_select(self.t, 0, index, out=self.t_batch)

    def record(self, loss):
        """``losses[counter] = loss``, then the counter on by one."""
        if not isinstance(loss, torch.Tensor) or loss.dtype != self.losses.dtype:
            raise TypeError(f"CUDA graph step: the loss is {type(loss).__name__} "
                            f"{getattr(loss, 'dtype', '')}, expected a {self.losses.dtype} "
                            f"tensor on {self.losses.device}")
        self.losses.index_copy_(0, self.counter, loss.reshape(1))
        self.counter.add_(1)

    def start_epoch(self, order, first=0):
        """Use ``order`` (the epoch's sample indices, on the device) from step ``first``."""
        if order.shape[0] > self.order.shape[0]:
            raise ValueError(f"CUDA graph step: {order.shape[0]} indices for a buffer of "
                             f"{self.order.shape[0]}")
        self.order[:order.shape[0]].copy_(order)
        self.counter.fill_(first)


class Graph:
    """A recorded ``torch.cuda.CUDAGraph`` and the memory pool its replays write into."""

    def __init__(self, graph, pool):
        self.graph, self.pool = graph, pool

    def launch(self):
        """One replay, queued on the current stream; nothing waits."""
        self.graph.replay()

    def pool_bytes(self):
        """0: PyTorch does not report a graph's pool apart (its blocks are in
        ``torch.cuda.memory_reserved``, which the backend's ``memory()`` gives)."""
        return 0


def capture(body, ops, own_gemm=True):
    """Run ``body()`` once, then record a second run of it: a :class:`Graph`. ``ops`` and
    ``own_gemm`` are :func:`backends.cuda.graph.capture`'s; PyTorch's products record as
    they are. Whatever the two runs changed on the device is the caller's to put back."""
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        body()  # warm-up: kernel choices, the allocator's blocks, one-time device probes
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    pool = torch.cuda.graph_pool_handle()
    try:
        with torch.cuda.graph(graph, pool=pool):
            body()
    finally:
        torch.cuda.synchronize()
    return Graph(graph, pool)


def synchronize():
    """Wait for all of the current device's work."""
    torch.cuda.synchronize()
