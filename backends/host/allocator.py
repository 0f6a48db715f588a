"""The host process's malloc policy, fixed for steady training steps (glibc only).

glibc's policy is the process's: :class:`HostAllocator` holds what xpnet set of it,
and the registry holds the one instance (``backends.host_allocator_for_training``,
``backends.large_blocks_from_heap`` and ``backends.tune_host_allocator`` are its
methods). The Trainer sets the policy for its run and gives it back when the run
ends; only a program that owns its process (a benchmark) fixes it for good.
"""

import contextlib
import os
import re

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MMAP_MAX_DEFAULT = 65536  # glibc's own, unless its environment says otherwise
THRESHOLD_DEFAULT = 128 * 1024  # glibc's first mmap and trim thresholds
MMAP_THRESHOLD_TRAINING = 32 * 2**20  # glibc's largest
TRIM_THRESHOLD_TRAINING = 256 * 2**20


def _libc(name):
    """The C library's function ``name``, or None where it has none (not glibc)."""
    try:
        import ctypes
        import ctypes.util
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _mallopt():
    """glibc's ``mallopt``, or None where the C library has none."""
    return _libc("mallopt")


def _malloc_trim():
    """glibc's ``malloc_trim(0)``: the heap's free memory back to the OS (where it exists)."""
    trim = _libc("malloc_trim")
    if trim is not None:
        trim(0)


def _outside(tunable, variable, default):
    """A malloc setting as glibc had it before us: what its environment set (the tunable
    in ``GLIBC_TUNABLES``, or the older ``MALLOC_*_`` variable), else its default."""
    tunables = re.search(rf"glibc\.malloc\.{tunable}=(\d+)", os.environ.get("GLIBC_TUNABLES", ""))
    value = tunables.group(1) if tunables else os.environ.get(variable, "")
    return int(value) if value.strip().isdigit() else default


def _mmap_max_outside():
    """The mmap count glibc had before us: its default, or what its environment set."""
    return _outside("mmap_max", "MALLOC_MMAP_MAX_", MMAP_MAX_DEFAULT)


def _thresholds_outside():
    """The mmap and trim thresholds glibc starts a process with (its environment's, else
    128 KiB each)."""
    return (_outside("mmap_threshold", "MALLOC_MMAP_THRESHOLD_", THRESHOLD_DEFAULT),
            _outside("trim_threshold", "MALLOC_TRIM_THRESHOLD_", THRESHOLD_DEFAULT))


class HostAllocator:
    """What xpnet set of glibc's malloc policy in this process: :meth:`for_training` and
    :meth:`large_blocks_from_heap` (blocks; nested blocks counted) and :meth:`tune`
    (once, for good)."""

    def __init__(self):
        self.tuned = False  # fixed for the process's life (tune)
        self._heap_depth = 0  # nested blocks: the outermost sets and gives back
        self._heap_on = False
        self._training_depth = 0

    @contextlib.contextmanager
    def for_training(self):
        """Within the block, the policy of :meth:`tune` and :meth:`large_blocks_from_heap`
        (glibc only); given back on the way out. The Trainer wraps each run on the CPU
        (NumPy's arrays, PyTorch's CPU tensors) in this: the run's steps reuse their
        temporaries from the heap, and the process it returns to frees memory as before.

        Given back means: the mmap count as glibc had it, the mmap and trim thresholds
        as the process started with them (glibc's 128 KiB, or what ``MALLOC_*_`` or
        ``GLIBC_TUNABLES`` set), and the heap's free memory returned to the OS
        (``malloc_trim``). One thing cannot be given back: glibc raises its thresholds
        by itself as large blocks are freed, stops doing so once a program sets them,
        and has no call that reads them, so after a run they stay at their starting
        values instead of moving. In a process that called :meth:`tune` (a program
        that fixed the policy for good) the block leaves the thresholds alone. Nested
        blocks: the outermost sets and gives back. Yields whether the thresholds were
        set here.
        """
        mallopt = _mallopt() if self._training_depth == 0 and not self.tuned else None
        applied = mallopt is not None and self._set_thresholds(mallopt)
        self._training_depth += 1
        try:
            with self.large_blocks_from_heap():
                yield applied
        finally:
            self._training_depth -= 1
            if applied:
                mmap_threshold, trim_threshold = _thresholds_outside()
                mallopt(M_MMAP_THRESHOLD, mmap_threshold)
                mallopt(M_TRIM_THRESHOLD, trim_threshold)
                _malloc_trim()

    @staticmethod
    def _set_thresholds(mallopt):
        return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_TRAINING) == 1 and \
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_TRAINING) == 1

    def tune(self):
        """Keep freed host memory for reuse instead of returning it to the OS, for the
        rest of the process's life (glibc only): for a program that owns its process, a
        benchmark say; the Trainer sets the same for its run only (:meth:`for_training`).

        A NumPy training step allocates and frees temporaries of 100 KB to a few
        MB (a gathered batch, a weight gradient). glibc serves blocks above its
        mmap threshold (128 KB at first, then moving with what was freed last)
        with fresh pages that fault on first touch, so depending on what ran
        before, every step may pay hundreds of page faults (docs/performance.md
        measures what that costs). Fixing the threshold at 32 MB (glibc's
        largest) and trimming only above 256 MB makes those blocks come back from
        the heap, already mapped. The cost is that up to 256 MB of freed memory
        stays with the process. Blocks above 32 MB: :meth:`large_blocks_from_heap`.

        It is idempotent, process-wide, and does nothing where glibc's ``mallopt`` is
        not available. Returns whether the settings were applied.
        """
        if self.tuned:
            return True
        mallopt = _mallopt()
        if mallopt is None:
            return False
        self.tuned = self._set_thresholds(mallopt)
        return self.tuned

    @contextlib.contextmanager
    def large_blocks_from_heap(self):
        """Within the block, blocks of any size come from the heap (glibc only).

        Above glibc's largest mmap threshold (32 MB) every block is still mapped
        afresh and unmapped on free, so an array that size made each step (the
        columns of DeepConvNet's second convolution at batch 100 are 45 MB) faults
        in 11,000 new pages each time (docs/performance.md measures what that
        cost on PyTorch's CPU tensors). :meth:`for_training` (the Trainer's run)
        includes this; mmap is given back on the way out (to what glibc had before:
        ``MALLOC_MMAP_MAX_`` or ``GLIBC_TUNABLES`` where set), and what the heap
        grew by stays for reuse, trimmed as the thresholds in force say.
        Nested blocks give it back once, at the outermost.
        """
        mallopt = _mallopt() if self._heap_depth == 0 else None
        if mallopt is not None:
            self._heap_on = mallopt(M_MMAP_MAX, 0) == 1
        self._heap_depth += 1
        try:
            yield self._heap_on  # whether it took (glibc)
        finally:
            self._heap_depth -= 1
            if mallopt is not None and self._heap_on:
                mallopt(M_MMAP_MAX, _mmap_max_outside())
                self._heap_on = False
