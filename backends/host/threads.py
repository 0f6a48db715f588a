"""The host's threads: how many xpnet uses, its pool, and NumPy's BLAS while they run.

NumPy runs an element-wise pass or a strided copy on one thread, while
one core moves memory at about half the speed two do (docs/performance.md),
and it releases the GIL in those loops: so :class:`Pool` runs the same
array code on ranges of samples in a small thread pool.

That pays only if nothing else spins on the cores, and OpenBLAS's worker
threads busy-wait for about 0.1 s after each product. So while xpnet's
own parts run, :class:`Blas` sets NumPy's BLAS to one thread (through
threadpoolctl, which finds OpenBLAS, MKL or BLIS in whatever NumPy build
is installed) and gives the threads back at the end of the network call
that asked for it: the user's own products after it run as before.

The settings' ``host_threads`` (``XPNET_HOST_THREADS``) sets the number of
threads (default: the cores this process may run on, at most 8, or 1 where
threadpoolctl is not installed, since BLAS's spinning workers would take the
other cores); 1 turns the splitting off and leaves BLAS alone. In a
data-parallel job the default is this process's share of its machine's cores,
and :func:`cpu_share` holds BLAS (and OpenMP) to that share while the Trainer
runs (docs/distributed.md measures what several processes' full BLAS pools
cost on one machine).
"""

import concurrent.futures
import contextlib
import functools
import os
import threading

from backends import mpi_env

MAX_DEFAULT_THREADS = 8  # memory-bound passes stop scaling well before that many cores
MIN_PART_BYTES = 1 << 18  # a part smaller than ~256 KB costs more to hand over than it saves
MIN_PART_MACS = 1 << 23  # ~8M multiply-adds, ~0.3 ms on one core: worth a hand-over

@functools.cache
def blas_controller():
    """threadpoolctl's controller of NumPy's BLAS, or None (not installed, or no BLAS
    found): a probe of the libraries loaded, made once a process."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    found = ThreadpoolController().select(user_api="blas")
    return found if found.lib_controllers else None


def host_threads(settings, environ=None):
    """The thread count: the settings' ``host_threads`` (``XPNET_HOST_THREADS``) where
    given, else the cores this process may use (at most 8), or 1 where BLAS's threads
    cannot be set; ``environ`` holds a launcher's variables (default ``os.environ``)."""
    if settings.host_threads is not None:
        return settings.host_threads
    if blas_controller() is None:
        return 1
    return max(1, min(cores_of_this_process(environ), MAX_DEFAULT_THREADS))


def cores_of_this_process(environ=None):
    """The cores this process should use: those it may run on, divided among the processes
    a launcher started on its machine (at least one). Where a launcher pinned each process
    to cores of its own that undercounts, which costs far less than two processes'
    spinning thread pools on the same cores; ``XPNET_HOST_THREADS`` then says better."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = os.cpu_count() or 1
    job = mpi_env.launched(environ)
    return allowed if job is None else max(1, allowed // job.local_size)


def cpu_share(settings):
    """Around a data-parallel run: NumPy's BLAS and OpenMP (PyTorch's CPU threads) held to
    this process's share of the machine's cores, given back after. Several processes
    each running BLAS on every core spin against one another (docs/distributed.md). The
    share is the settings' ``host_threads`` where given, else
    :func:`cores_of_this_process`; a pool set lower already (by ``OPENBLAS_NUM_THREADS``,
    say) keeps its count. Outside a launched job, nothing."""
    job = mpi_env.launched()
    if job is None or job.local_size == 1:
        return contextlib.nullcontext()  # alone: no scan of the loaded libraries either
    controller = _all_controller()
    if controller is None:
        return contextlib.nullcontext()
    share = settings.host_threads or cores_of_this_process()
    return controller.limit(limits={pool.prefix: min(pool.num_threads, share)
                                    for pool in controller.lib_controllers})


def _all_controller():
    """threadpoolctl's controller of every thread pool it finds (BLAS, OpenMP), or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


class Pool:
    """``threads`` threads (the calling one included) that run parts of a pass."""

    def __init__(self, threads):
        self.threads = threads
        self._executor = None
        self._pid = None
        self._local = threading.local()  # .inside: this thread is running a part already

    def parts(self, n, nbytes=0, macs=0):
        """How many parts ``n`` samples are cut into for a pass moving ``nbytes`` or doing
        ``macs`` multiply-adds: none smaller than is worth a hand-over."""
        return max(1, min(self.threads, n, max(nbytes // MIN_PART_BYTES, macs // MIN_PART_MACS)))

    def _pool(self):
        # A forked child inherits the pool object but none of its threads: work
        # queued there would wait forever, so each process makes its own.
        if self._executor is None or self._pid != os.getpid():
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.threads - 1, thread_name_prefix="xpnet-host")
            self._pid = os.getpid()
        return self._executor

    def each_part(self, work, n, nbytes=0, macs=0):
        """Run ``work(lo, hi)`` over ranges of ``[0, n)``, in parallel where it is large."""
        parts = self.parts(n, nbytes, macs)
        if parts < 2 or getattr(self._local, "inside", False):
            work(0, n)  # small, or called from inside a part: no nested split
            return
        bounds = [n * i // parts for i in range(parts + 1)]
        futures = [self._pool().submit(self._part, work, lo, hi)
                   for lo, hi in zip(bounds[1:-1], bounds[2:])]
        try:
            self._part(work, bounds[0], bounds[1])  # the calling thread takes the first part
        finally:
            concurrent.futures.wait(futures)  # never return while a part still writes
        for future in futures:
            future.result()  # re-raises a part's error

    def _part(self, work, lo, hi):
        self._local.inside = True
        try:
            work(lo, hi)
        finally:
            self._local.inside = False


class Blas:
    """NumPy's BLAS threads, lent to xpnet within a network call and given back after it.

    ``with blas.scope():`` marks one call (a forward pass, a gradient, an
    evaluation; scopes nest, only the outermost counts). Inside it,
    :meth:`borrow` sets BLAS to one thread, once, so xpnet's own parts have the
    cores; leaving the outermost scope restores whatever BLAS had before.
    Outside every scope BLAS is never touched.

    BLAS's thread count belongs to the process, so the scopes of every thread count
    together: networks called from several threads at once borrow the threads once and
    give them back when the last call ends. The borrow and the give-back happen under
    one lock, each looking again once it holds it (threadpoolctl's calls let the GIL go:
    unlocked, two borrows each recorded the other's one thread as the count to restore,
    leaving BLAS on one thread for the rest of the process). Counting the scopes takes
    no lock, so a call that borrows nothing (a fully connected network's) pays nothing
    for it: an integer attribute's ``+= 1`` is not interrupted by another thread in
    CPython with its GIL.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0  # open scopes, of every thread
        self._limiter = None  # threadpoolctl's record of the threads to give back
        self._scope = _Scope(self)  # one, re-entered: scopes nest by depth

    @property
    def borrowed(self):
        """Whether BLAS runs on one thread for xpnet right now."""
        return self._limiter is not None

    def scope(self):
        """The context of one network call: re-entrant, the same object every time."""
        return self._scope

    def borrow(self):
        """Inside a scope: BLAS to one thread until the scope ends. Elsewhere nothing."""
        if self._depth and self._limiter is None:
            with self._lock:
                controller = blas_controller()
                if self._depth and self._limiter is None and controller is not None:
                    self._limiter = controller.limit(limits=1, user_api="blas")
                    _release_control(controller)

    def _give_back(self):
        if self._limiter is not None:
            limiter, self._limiter = self._limiter, None
            limiter.restore_original_limits()
            _release_control(blas_controller())


def _release_control(controller):
    """Let go of OpenBLAS after setting its threads, as threadpoolctl's own ``with limit():``
    does on leaving. threadpoolctl lets one Python thread at a time set OpenBLAS's thread
    pool (it is the process's), and ignores, without a word, what any other thread sets
    while that one lives: a call that set the threads outside ``with`` kept control, so a
    give-back from another thread did nothing and BLAS stayed on one thread. Only the
    thread in control lets go here; one that holds it with ``with`` keeps it."""
    for library in controller.lib_controllers if controller is not None else ():
        clear = getattr(type(library), "clear_controlling_thread", None)
        if clear is not None:  # OpenBLAS's controller, threadpoolctl 3.6 on
            clear()


class _Scope:
    __slots__ = ("blas",)

    def __init__(self, blas):
        self.blas = blas

    def __enter__(self):
        self.blas._depth += 1

    def __exit__(self, *exc):
        blas = self.blas
        blas._depth -= 1
        if not blas._depth and blas._limiter is not None:
            with blas._lock:  # again under the lock: another thread may have entered
                if not blas._depth and blas._limiter is not None:
                    blas._give_back()


def blas_summary(blas=None):
    """One line on NumPy's BLAS and its threads, for ``python -m backends``."""
    controller = blas_controller()
    if controller is None:
        return "BLAS threads left to BLAS (threadpoolctl not installed or no BLAS found)"
    libs = ", ".join(f"{c.internal_api} {c.num_threads} thread(s)"
                     for c in controller.lib_controllers)
    return (f"BLAS: {libs} (xpnet sets it to one thread inside a convolutional network's "
            f"call, while its own threads run, and gives the threads back after it)")
