"""The host process's malloc policy, fixed for steady training steps (glibc only).

glibc's policy is the process's: :class:`HostAllocator` holds what xpnet set of it,
and the registry holds the one instance (``backends.tune_host_allocator`` and
``backends.large_blocks_from_heap`` are its methods).
"""

import contextlib
import os
import re

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MMAP_MAX_DEFAULT = 65536  # glibc's own, unless its environment says otherwise


def _mallopt():
    """glibc's ``mallopt``, or None where the C library has none."""
    try:
        import ctypes
        import ctypes.util
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def _mmap_max_outside():
    """The mmap count glibc had before us: its default, or what its environment set."""
    tunables = re.search(r"glibc\.malloc\.mmap_max=(\d+)", os.environ.get("GLIBC_TUNABLES", ""))
    value = tunables.group(1) if tunables else os.environ.get("MALLOC_MMAP_MAX_", "")
    return int(value) if value.strip().isdigit() else MMAP_MAX_DEFAULT


class HostAllocator:
    """What xpnet set of glibc's malloc policy in this process: :meth:`tune` (once) and
    :meth:`large_blocks_from_heap` (a block; nested blocks counted)."""

    def __init__(self):
        self.tuned = False
        self._heap_depth = 0  # nested blocks: the outermost sets and gives back
        self._heap_on = False

    def tune(self):
        """Keep freed host memory for reuse instead of returning it to the OS (glibc only).

        A NumPy training step allocates and frees temporaries of 100 KB to a few
        MB (a gathered batch, a weight gradient). glibc serves blocks above its
        mmap threshold (128 KB at first, then moving with what was freed last)
        with fresh pages that fault on first touch, so depending on what ran
        before, every step may pay hundreds of page faults (docs/performance.md
        measures what that costs). Fixing the threshold at 32 MB (glibc's
        largest) and trimming only above 256 MB makes those blocks come back from
        the heap, already mapped. The cost is that up to 256 MB of freed memory
        stays with the process. Blocks above 32 MB: :meth:`large_blocks_from_heap`.

        The Trainer calls this for networks on the CPU (NumPy's arrays, and PyTorch's
        CPU tensors, whose allocator is glibc's too), for the run it was asked to do
        (a process that trains owns its allocator's policy; a library call that
        only predicts does not set it). It is idempotent, process-wide, and does
        nothing where glibc's ``mallopt`` is not available. Returns whether the
        settings were applied.
        """
        if self.tuned:
            return True
        mallopt = _mallopt()
        if mallopt is None:
            return False
        self.tuned = mallopt(M_MMAP_THRESHOLD, 32 * 2**20) == 1 and \
            mallopt(M_TRIM_THRESHOLD, 256 * 2**20) == 1
        return self.tuned

    @contextlib.contextmanager
    def large_blocks_from_heap(self):
        """Within the block, blocks of any size come from the heap (glibc only).

        Above glibc's largest mmap threshold (32 MB) every block is still mapped
        afresh and unmapped on free, so an array that size made each step (the
        columns of DeepConvNet's second convolution at batch 100 are 45 MB) faults
        in 11,000 new pages each time (docs/performance.md measures what that
        cost on PyTorch's CPU tensors). The Trainer wraps its run in
        this; mmap is given back on the way out (to what glibc had before:
        ``MALLOC_MMAP_MAX_`` or ``GLIBC_TUNABLES`` where set), and what the heap
        grew by stays for reuse, trimmed above 256 MB as :meth:`tune` set.
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
