"""The host process's malloc thresholds, fixed for steady training steps (glibc only)."""

_tuned = False


def tune_host_allocator():
    """Keep freed host memory for reuse instead of returning it to the OS (glibc only).

    A NumPy training step allocates and frees temporaries of 100 KB to a few
    MB (a gathered batch, a weight gradient). glibc serves blocks above its
    mmap threshold (128 KB at first, then moving with what was freed last)
    with fresh pages that fault on first touch, so depending on what ran
    before, every step may pay hundreds of page faults (docs/performance.md
    measures what that costs). Fixing the threshold at 32 MB and trimming only
    above 256 MB makes those blocks come back from the heap, already mapped.
    The cost is that up to 256 MB of freed memory stays with the process.

    The Trainer calls this for networks on the CPU (NumPy's arrays, and PyTorch's
    CPU tensors, whose allocator is glibc's too), for the run it was asked to do
    (a process that trains owns its allocator's policy; a library call that
    only predicts does not set it). It is idempotent, process-wide, and does
    nothing where glibc's ``mallopt`` is not available. Returns whether the
    settings were applied.
    """
    global _tuned
    if _tuned:
        return True
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    ok = mallopt(M_MMAP_THRESHOLD, 32 * 2**20) == 1 and mallopt(M_TRIM_THRESHOLD, 256 * 2**20) == 1
    _tuned = ok
    return ok
