"""The scripts' own argparse types and checks: numbers in range, and an output path that
can be written, each said in argparse's one line before anything runs. Light to import:
the benchmark's MPI workers load it too."""

import argparse
import math
import os

from framework.files import unwritable


def non_negative_seed(text):
    """argparse type of ``--seed``: a non-negative integer, as NumPy's generators take."""
    return _integer(text, 0, "a non-negative integer")


def positive(text):
    """argparse type: an integer of at least 1."""
    return _integer(text, 1, "a positive integer")


def non_negative(text):
    """argparse type: an integer of at least 0."""
    return _integer(text, 0, "a non-negative integer")


def _integer(text, least, what):
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_number(text):
    """argparse type: a finite number above 0 (a learning rate, a number of epochs)."""
    return _finite(text, lambda v: v > 0, "a finite number above 0")


def non_negative_number(text):
    """argparse type: a finite number, 0 or more (weight decay's lambda)."""
    return _finite(text, lambda v: v >= 0, "a finite number, 0 or more")


def ratio(text):
    """argparse type: a fraction in [0, 1) (a dropout ratio: 1 would drop everything)."""
    return _finite(text, lambda v: 0 <= v < 1, "a ratio in [0, 1)")


def non_negative_seconds(text):
    """argparse type: a number of seconds, 0 or more."""
    return _finite(text, lambda v: v >= 0, "a number of seconds, 0 or more")


def _finite(text, fits, what):
    """``text`` as a finite float that ``fits``, or argparse's error saying ``what``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and fits(value)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def check_output(p, option, path):
    """``p.error`` now, not after the run, where ``option``'s file ``path`` could not be
    written (a folder in its place, a folder that cannot be made or written to)."""
    why = path and unwritable(path)
    if why:
        p.error(f"{option} {path}: {why}")


def figure_format(path):
    """The format a figure is written in, from ``path``'s suffix (``.png``, ``.pdf``,
    ``.svg``: any matplotlib writes; a name without one gets a PNG), or ``ValueError``
    naming the formats: the suffix used to be ignored, and a PNG written under it."""
    suffix = os.path.splitext(path)[1][1:].lower()
    if not suffix:
        return "png"
    from matplotlib.backend_bases import FigureCanvasBase
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(f"matplotlib writes no .{suffix} figures; the suffix picks the format: "
                         f"{', '.join('.' + k for k in sorted(formats))} (none: PNG)")
    return suffix


def check_figure(p, option, path):
    """:func:`check_output`, and ``p.error`` for a figure's suffix matplotlib cannot write
    (where matplotlib is not installed, the script's own message says so later)."""
    check_output(p, option, path)
    if not path:
        return
    try:
        figure_format(path)
    except ImportError:
        pass
    except ValueError as e:
        p.error(f"{option} {path}: {e}")
