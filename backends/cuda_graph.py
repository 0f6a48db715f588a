"""A whole training step replayed as one CUDA graph.

At batch 100 the book's network is a few microseconds of GPU arithmetic
behind twenty-odd launches that CuPy issues one by one from Python. A
CUDA graph records those launches once and replays them with one call, so
the step costs what the GPU does, not what the host does.

The recorded step is the eager one, run by the same layers and optimizer
(``network.gradient`` then ``optimizer.update``); what changes is only
around it:

* The batch is gathered *inside* the graph by a kernel that reads the step
  number from a device counter, from an index array refreshed once per
  epoch. A graph's kernel arguments are fixed at capture, so a batch
  offset passed from the host would replay step 0 forever.
* The loss is copied into ``losses[counter]`` and the counter advanced by
  a last kernel, so the host reads an epoch's losses when it wants to.
* Matrix products run on :meth:`backends.cuda_ops.CupyOps.gemm` (CuPy
  refuses cuBLAS during capture, cupy issue #6290).
* Temporaries come from a memory pool of the graph's own, which nothing
  else allocates from: the replays write into those addresses.

:meth:`CudaGraphStep.capture` runs one step for real (to compile the
kernels and fill the pool), records the second, then puts the parameters,
the layers' state (batch norm's running averages, dropout's generator
counters, both updated in place on the device and so recorded with the
step) and the optimizer's state back, so building a graph changes nothing.
An optimizer that computed a value on the host at every step could not be
replayed; it would say so with ``capturable = False`` and the Trainer
would keep the eager step. Adam computes its step size on the device from
a step count kept there, so it is recorded like the others. A learning
rate changed between epochs (a schedule in a callback) is seen by
:meth:`CudaGraphStep.is_current`, and the Trainer records the step again.
"""

import cupy
import numpy

from backends.cuda_ops import c_type, compile_kernel
from backends.ops import ops_for

GATHER_SOURCE = r'''
extern "C" __global__ void xpnet_gather(const T* x, const L* t, const I* order,
                                        const int* counter, T* xb, L* tb, int batch, int d)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)batch * d) return;
    const int r = (int)(idx / d);
    const long long col = idx - (long long)r * d;
    const long long src = (long long)order[(long long)counter[0] * batch + r];
    xb[idx] = x[src * d + col];
    if (col == 0) tb[r] = t[src];
}
'''

RECORD_SOURCE = r'''
extern "C" __global__ void xpnet_record(const T* loss, T* losses, int* counter)
{
    losses[counter[0]] = loss[0];
    counter[0] += 1;
}
'''


class CudaGraphStep:
    """One training step of ``network`` with ``optimizer`` on ``batches``' data, as a CUDA graph.

    ``batches`` is the Trainer's :class:`framework.data.DeviceBatches`
    (shuffled or drawn with replacement). Per epoch: :meth:`start_epoch`
    with that epoch's index array, then :meth:`launch` once per full batch;
    step ``i``'s loss lands in ``losses[i]``.
    """

    def __init__(self, network, optimizer, batches, gemm="own", loss_of=None):
        if gemm not in ("own", "cublas"):
            raise ValueError(f"CudaGraphStep: gemm={gemm!r}; expected 'own' or 'cublas'")
        self.gemm = gemm  # 'cublas': try cuBLAS under capture (scripts/graph_probe.py)
        x, t = batches.x, batches.t
        if x.ndim < 2 or t.ndim != 1 or t.dtype.kind not in "iu" or not x.flags.c_contiguous:
            raise ValueError(f"CudaGraphStep: needs contiguous (N, ...) data and integer labels, "
                             f"got x {tuple(x.shape)} and t {tuple(t.shape)} {t.dtype}")
        self.network, self.optimizer = network, optimizer
        # the step's loss array, read after the update (the Trainer passes its step_loss:
        # weight decay included)
        self.loss_of = loss_of or (lambda net: net.last_layer.loss)
        self.x, self.t = x, t
        self.batch = batches.batch_size
        self.steps_per_epoch = len(batches)
        index_dtype = numpy.int32 if batches.size < 2**31 else numpy.int64
        self.order = cupy.zeros(max(batches.size, self.steps_per_epoch * self.batch),
                                dtype=index_dtype)
        self.counter = cupy.zeros(1, dtype=numpy.int32)
        self.losses = cupy.zeros(self.steps_per_epoch, dtype=network.dtype)
        self.sample_size = x[0].size  # images are gathered as rows of their pixels
        self.x_batch = cupy.empty((self.batch,) + tuple(x.shape[1:]), dtype=x.dtype)
        self.t_batch = cupy.empty(self.batch, dtype=t.dtype)
        self._gather = compile_kernel(GATHER_SOURCE, "xpnet_gather", T=c_type(x.dtype),
                                      L=c_type(t.dtype), I=c_type(index_dtype))
        self._record = compile_kernel(RECORD_SOURCE, "xpnet_record",
                                      T=c_type(network.dtype))
        self.graph = None
        self._pool = None  # the graph's own memory: kept as long as the graph
        self._stream = None
        self._recorded = None  # what the graph baked in: see is_current()

    def _body(self):
        """The step as issued eagerly: gather, gradient, update, record."""
        n = self.batch * self.sample_size
        threads = 256
        self._gather(((n + threads - 1) // threads,), (threads,),
                     (self.x, self.t, self.order, self.counter, self.x_batch, self.t_batch,
                      numpy.int32(self.batch), numpy.int32(self.sample_size)))
        grads = self.network.gradient(self.x_batch, self.t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = self.loss_of(self.network)
        if getattr(loss, "dtype", None) != self.losses.dtype:
            raise TypeError(f"CudaGraphStep: the loss is {type(loss).__name__} "
                            f"{getattr(loss, 'dtype', '')}, expected a {self.losses.dtype} "
                            f"array on the GPU")
        self._record((1,), (1,), (loss, self.losses, self.counter))

    def _fingerprint(self):
        """The optimizer's numbers and the arrays the graph was recorded with."""
        # private numbers (Adam's host copy of its step count) are not baked in
        numbers = tuple(sorted((k, v) for k, v in vars(self.optimizer).items()
                               if isinstance(v, (int, float)) and k != "iter"
                               and not k.startswith("_")))
        arrays = list(self.network.params.values()) + list(self._state().values())
        arrays += [v for v in vars(self.optimizer).values() if isinstance(v, cupy.ndarray)]
        for state in self.optimizer.state.values():
            arrays += list((state or {}).values())
        return numbers, arrays

    def is_current(self):
        """False once a replay would be wrong: a learning rate (or any other number of the
        optimizer) changed since recording, or a parameter or state array was replaced."""
        if self._recorded is None:
            return False
        numbers, arrays = self._fingerprint()
        old_numbers, old_arrays = self._recorded
        return numbers == old_numbers and len(arrays) == len(old_arrays) and \
            all(a is b for a, b in zip(arrays, old_arrays))

    def _state(self):
        """The network's layer state (running averages, dropout generators), if it has any."""
        state = getattr(self.network, "state", None)
        return state() if state else {}

    def _snapshot(self):
        params = {k: p.copy() for k, p in self.network.params.items()}
        params.update({("state", k): b.copy() for k, b in self._state().items()})
        state = {slot: None if arrays is None else {k: a.copy() for k, a in arrays.items()}
                 for slot, arrays in self.optimizer.state.items()}
        return params, state, self.optimizer.iter

    def _restore(self, snapshot):
        params, state, it = snapshot
        for k, p in self.network.params.items():
            p[...] = params[k]
        for k, b in self._state().items():
            b[...] = params[("state", k)]
        for slot, arrays in self.optimizer.state.items():
            for k, a in (arrays or {}).items():
                saved = state.get(slot)
                if saved is None:
                    a.fill(0)  # created by the warm-up: optimizers start their state at zero
                else:
                    a[...] = saved[k]
        self.optimizer.iter = it

    def capture(self):
        """Record the step; parameters and optimizer state are left as they were."""
        ops = ops_for(self.x)
        snapshot = self._snapshot()
        pool = cupy.cuda.MemoryPool()
        stream = cupy.cuda.Stream(non_blocking=True)
        cupy.cuda.Device().synchronize()  # the snapshot and the data, before the other stream
        ops.graph_kernels = self.gemm == "own"
        try:
            with cupy.cuda.using_allocator(pool.malloc), stream:
                self._body()  # warm-up: compiles the kernels and fills the graph's pool
                stream.synchronize()
                stream.begin_capture()
                try:
                    self._body()
                except BaseException:
                    try:
                        stream.end_capture()
                    except Exception:
                        pass  # the capture is broken anyway; report the first error
                    raise
                graph = stream.end_capture()
                stream.synchronize()
        finally:
            ops.graph_kernels = False
            cupy.cuda.Device().synchronize()
            self._restore(snapshot)
            self.counter.fill(0)
        self.graph, self._pool, self._stream = graph, pool, stream
        self._recorded = self._fingerprint()
        return self

    def time_against_eager(self, repeats=5):
        """Seconds a step takes replayed and issued eagerly (cuBLAS, fused kernels), as
        ``(graph, eager)``, each the best of ``repeats`` after a warm-up; everything the
        steps changed is put back. The Trainer's ``graph="auto"`` keeps the faster: for
        large matrices cuBLAS can beat the graph's own GEMMs by more than the launches cost."""
        import time
        repeats = max(1, min(repeats, self.steps_per_epoch - 1))
        snapshot = self._snapshot()
        times = {"graph": [], "eager": []}
        try:
            for mode in ("graph", "eager"):
                self.counter.fill(0)
                for i in range(repeats + 1):
                    cupy.cuda.Device().synchronize()
                    start = time.perf_counter()
                    self.graph.launch() if mode == "graph" else self._body()
                    cupy.cuda.Device().synchronize()
                    if i:  # the first is a warm-up (kernel builds, cuBLAS handles)
                        times[mode].append(time.perf_counter() - start)
        finally:
            cupy.cuda.Device().synchronize()
            self._restore(snapshot)
            self.counter.fill(0)
        return min(times["graph"]), min(times["eager"])

    def start_epoch(self, order, first=0):
        """Use ``order`` (the epoch's sample indices, on the device) from step ``first``
        (0, or where an interrupted epoch stopped)."""
        if order.size > self.order.size:
            raise ValueError(f"CudaGraphStep: {order.size} indices for a buffer of "
                             f"{self.order.size}")
        self.order[:order.size] = order
        self.counter.fill(first)

    def pool_bytes(self):
        """Bytes held by the graph's own memory pool (its temporaries)."""
        return 0 if self._pool is None else self._pool.total_bytes()

    def launch(self):
        """One training step, queued on the current stream; nothing waits."""
        self.graph.launch()
