"""Stopping a run cleanly: while it trains, SIGINT (Ctrl-C) and SIGTERM (a scheduler,
``kill``, ``mpiexec`` passing either on) are noted rather than raised, so the step in
flight finishes and the run saves before it stops with :class:`TrainingInterrupted`."""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :meth:`framework.trainer.Trainer.train` after a SIGINT (Ctrl-C) or
    SIGTERM, once the step in flight is done and the checkpoint, if one is configured,
    is written.

    A ``KeyboardInterrupt``, so notebooks and callers stop as they would on
    Ctrl-C. ``signum`` is the signal, ``step`` the last step done,
    ``checkpoint`` the file a ``resume=True`` continues from (None if none
    was configured).
    """

    def __init__(self, signum, step, max_iter, epoch, checkpoint):
        self.signum, self.step, self.max_iter = signum, step, max_iter
        self.epoch, self.checkpoint = epoch, checkpoint
        name = signal.Signals(signum).name
        where = (f"; {checkpoint} holds the run as it stood" if checkpoint
                 else "; nothing was saved (no checkpoint configured)")
        super().__init__(f"training interrupted by {name} after step {step} of {max_iter} "
                         f"(epoch {epoch}){where}")


@contextlib.contextmanager
def noted(note):
    """Within: SIGINT and SIGTERM call ``note(signum)`` instead of their handlers, which
    are put back on the way out; a second Ctrl-C only calls it again.

    Handlers can be set in the main thread only: elsewhere the defaults stay. A
    signal the process was started ignoring (a shell starts its ``&`` jobs with
    SIGINT ignored) stays ignored, as Python itself leaves it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        note(signum)
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
