"""framework/interrupts.py: SIGINT and SIGTERM noted while a run trains, handlers given back."""

import os
import signal
import threading

import pytest

from framework import interrupts
from framework.interrupts import TrainingInterrupted


def test_signals_are_noted_not_raised_and_the_handlers_come_back(sigint_heard):
    term = signal.getsignal(signal.SIGTERM)
    seen = []
    with interrupts.noted(seen.append):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C: noted again, nothing more
    assert seen == [signal.SIGINT, signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is term


def test_handlers_come_back_when_the_run_raises(sigint_heard):
    with pytest.raises(ZeroDivisionError):
        with interrupts.noted(lambda signum: None):
            1 / 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        seen = []
        with interrupts.noted(seen.append):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
        assert seen == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_the_handlers_stay(sigint_heard):
    found = []

    def run():
        with interrupts.noted(found.append):
            found.append(signal.getsignal(signal.SIGINT))
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert found == [signal.default_int_handler]


def test_the_error_says_where_the_run_stands():
    saved = TrainingInterrupted(signal.SIGTERM, 3417, 10000, 6, "out/run.npz")
    assert isinstance(saved, KeyboardInterrupt)
    assert str(saved) == ("training interrupted by SIGTERM after step 3417 of 10000 (epoch 6); "
                          "out/run.npz holds the run as it stood")
    assert (saved.signum, saved.step, saved.max_iter, saved.epoch) == (signal.SIGTERM, 3417,
                                                                       10000, 6)
    lost = TrainingInterrupted(signal.SIGINT, 5, 40, 1, None)
    assert str(lost).endswith("; nothing was saved (no checkpoint configured)")
