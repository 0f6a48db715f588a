"""The models' argument checks: each returns the clean value or raises ``ValueError``
naming the model (``owner``), the argument and what was expected."""

import math
import numbers

# the models' checks, importable here as before
from backends.arrays import check_flag, float_dtype  # noqa: F401

#: named initial scales: std = sqrt(gain / fan_in)
INIT_GAINS = {"relu": 2.0, "he": 2.0, "sigmoid": 1.0, "xavier": 1.0}
#: the keys of a book-style conv_param, with SimpleConvNet's defaults
DEFAULT_CONV = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


def check_size(owner, what, value):
    """``value`` as a positive int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}: {what} must be a positive integer, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{owner}: {what} must be at least 1, got {value}")
    return int(value)


def check_sizes(owner, what, values):
    """A list of positive ints (``hidden_size_list``)."""
    try:
        values = list(values)
    except TypeError:
        raise ValueError(f"{owner}: {what} must be a list of layer sizes, got "
                         f"{values!r}") from None
    return [check_size(owner, f"{what}[{i}]", v) for i, v in enumerate(values)]


def check_ratio(owner, what, value):
    """A dropout ratio in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{owner}: {what} must lie in [0, 1), got {value!r}")
    return float(value)


def check_decay(owner, value):
    """A weight decay lambda of 0 or more."""
    try:
        lam = float(value)
    except (TypeError, ValueError):
        lam = float("nan")
    if isinstance(value, (bool, str, bytes)) or not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"{owner}: weight_decay_lambda must be 0 or more, got {value!r}")
    return lam


def check_choice(owner, what, value, choices):
    """One of ``choices`` (names, any case), lower-cased."""
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{owner}: {what}={value!r}; expected one of "
                         f"{', '.join(repr(k) for k in choices)}")
    return value.lower()


def init_scale(owner, weight_init_std, fan_in):
    """The std of a layer's initial weights: a number, or 'relu'/'he' (sqrt(2 / fan_in))
    or 'sigmoid'/'xavier' (sqrt(1 / fan_in))."""
    if isinstance(weight_init_std, str):
        gain = INIT_GAINS.get(weight_init_std.lower())
        if gain is None:
            raise ValueError(f"{owner}: weight_init_std={weight_init_std!r} is not a known "
                             f"initialisation; expected a number or one of "
                             f"{', '.join(repr(k) for k in INIT_GAINS)}")
        return math.sqrt(gain / fan_in)
    try:
        scale = float(weight_init_std)
    except (TypeError, ValueError):
        scale = float("nan")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{owner}: weight_init_std must be a positive number or a name, got "
                         f"{weight_init_std!r}")
    return scale


def conv_settings(owner, conv_param, what="conv_param"):
    """A checked copy of a book-style ``conv_param`` dict (filter_num, filter_size, pad, stride)."""
    if not isinstance(conv_param, dict) or set(conv_param) != set(DEFAULT_CONV):
        raise ValueError(f"{owner}: {what} must be a dict with the keys "
                         f"{', '.join(DEFAULT_CONV)}; got {conv_param!r}")
    out = {key: check_size(owner, f"{what}['{key}']", conv_param[key])
           for key in ("filter_num", "filter_size", "stride")}
    pad = conv_param["pad"]
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"{owner}: {what}['pad'] must be an integer of at least 0, got {pad!r}")
    out["pad"] = int(pad)
    return {key: out[key] for key in DEFAULT_CONV}


def image_dims(owner, input_dim):
    """``(channels, height, width)`` as a list of positive ints."""
    try:
        dims = [check_size(owner, f"input_dim[{i}]", v) for i, v in enumerate(input_dim)]
    except TypeError:
        dims = []
    if len(dims) != 3:
        raise ValueError(f"{owner}: input_dim must be (channels, height, width), got {input_dim!r}")
    return dims
