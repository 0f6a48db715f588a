"""Activation and loss functions of chapters 3-5, for every backend's arrays alike: the
names of the book's ``common/functions.py``, and ``log_softmax``."""

from numbers import Integral, Number

from backends import (check_same_backend, dtype_kind, dtype_name, get_array_module,
                      is_device_array, ops_for, size)
from backends.arrays import check_arrays, is_array


def _array(owner, x, lists=False):
    """``x`` as an array: itself, or a Python number as NumPy's 0-d array (the book's
    functions are NumPy's, which take ``relu(-2.0)`` as they take an array: ours refused it
    while ``sigmoid(-2.0)`` answered); ``TypeError`` naming ``owner`` for a list, unless
    ``lists`` (softmax, as the book's takes one)."""
    if is_array(x):
        return x
    if isinstance(x, Number):
        return get_array_module(x).asarray(x)  # (NumPy's namespace: Python numbers are)
    if not lists:
        check_arrays(owner, x=x)
    return x


def _real(owner, x, lists=False):
    """``_array``'s ``x``, integers and bools as the library's default floating type: the
    book feeds NumPy ``softmax(np.array([1010, 1000, 990]))`` (3.5.2), which NumPy takes
    as float64, where PyTorch said ``"softmax_lastdim_kernel_impl" not implemented for
    'Long'`` and array-api-strict ``Only floating-point dtypes are allowed in exp``."""
    x = _array(owner, x, lists)
    if is_array(x) and dtype_kind(x.dtype) in "iub":
        xp = get_array_module(x)
        x = xp.astype(x, _default_dtype(xp, "real floating"))
    return x


def _counts(owner, x):
    """``_array``'s ``x``, bools as the library's default integer (NumPy's
    ``np.maximum(0, x)`` of the book reads a bool as 0 or 1), for the functions that keep
    an integer input's type (``relu``, ``step_function``)."""
    x = _array(owner, x)
    if dtype_kind(x.dtype) == "b":
        xp = get_array_module(x)
        x = xp.astype(x, _default_integer(xp))
    return x


def identity_function(x):
    """x: the output layer's activation for regression (3.5)."""
    return x


def step_function(x):
    """1 where x > 0, else 0 (3.2.2), in the library's default integer dtype (the book's
    ``dtype=int``: int64 on NumPy, int32 on JAX without float64)."""
    x = _counts("step_function", x)
    xp = get_array_module(x)
    return xp.astype(x > 0, _default_integer(xp))


def _default_integer(xp):
    """The library's default integer dtype: int64, or int32 on JAX without float64 (which
    warns where int64 is asked for)."""
    return _default_dtype(xp, "integral")


def _default_dtype(xp, kind):
    """The library's default dtype of ``kind`` (``"integral"``, ``"real floating"``): NumPy's
    float64, PyTorch's ``torch.get_default_dtype()``, JAX's float32 unless x64 is on."""
    return xp.__array_namespace_info__().default_dtypes()[kind]


def sigmoid(x):
    """1 / (1 + exp(-x)), computed without overflow for any finite x (the operations'
    ``sigmoid``).

    exp is only ever taken of -|x| <= 0, so it lies in (0, 1]; the two
    branches are the same function written for x >= 0 and x < 0.
    """
    x = _real("sigmoid", x)  # a list: was "'>=' not supported between 'list' and 'int'"
    return ops_for(x).sigmoid(x)


def sigmoid_grad(x):
    """d sigmoid / dx = (1 - sigmoid(x)) * sigmoid(x), at x (4.5's TwoLayerNet)."""
    y = sigmoid(_real("sigmoid_grad", x))
    return (1 - y) * y


def relu(x):
    """max(0, x), elementwise (the operations' ``relu``: +0 where x <= 0, a NaN kept)."""
    x = _counts("relu", x)  # a list: was "'list' object has no attribute 'nbytes'"
    if dtype_kind(x.dtype) in "iu":  # kept integers, as NumPy's np.maximum(0, x) does
        xp = get_array_module(x)  # (PyTorch refused them; JAX answered in float64)
        return xp.maximum(x, xp.zeros_like(x))
    return ops_for(x).relu(x, mask=False)[0]


def relu_grad(x):
    """d relu / dx: 1 where x >= 0, else 0, in x's dtype (the book's choice at 0)."""
    x = _counts("relu_grad", x)
    return get_array_module(x).astype(x >= 0, x.dtype)


def softmax(x):
    """exp(x) / sum(exp(x)) along the last axis (1-D or 2-D input).

    The row maximum is subtracted first, so exp never overflows (the operations'
    ``softmax``).
    """
    x = _real("softmax", x, lists=True)
    return ops_for(x).softmax(x)


def log_softmax(x):
    """x - logsumexp(x) along the last axis, exact where log(softmax(x)) underflows."""
    x = _real("log_softmax", x, lists=True)
    return ops_for(x).log_softmax(x)


def one_hot_classes(xp, t):
    """The class of each one-hot row of ``t`` (``(N, C)``): the column of its largest
    entry. Rows of bools through int8: PyTorch and the standard take no argmax of bools."""
    if dtype_kind(t.dtype) == "b":
        t = xp.astype(t, xp.int8)
    return xp.argmax(t, axis=1)


def cross_entropy_error(y, t):
    """-sum(t * log(y + 1e-7)) / N, the book's mini-batch cross entropy.

    ``y`` holds probabilities, 1-D (one sample) or 2-D ``(N, C)``; ``t`` is
    one-hot (same size as ``y``) or integer class indices. The 1e-7 guards
    log(0), as in the book.

    Where the book would index past the classes (NumPy's ``IndexError``, or a label
    of -1 read silently as the last class), a label outside ``0..C - 1`` is a
    ``ValueError`` naming the range on the host; on a GPU, where reading the labels
    would wait for the device, its sample's term is NaN, so the loss is.
    """
    check_arrays("cross_entropy_error", y=y, t=t)  # a list: "no attribute 'ndim'" before
    xp = get_array_module(y, t)
    check_same_backend("cross_entropy_error", y=y, t=t)
    if y.ndim not in (1, 2):
        raise ValueError(f"cross_entropy_error: y has shape {tuple(y.shape)}; expected the "
                         f"probabilities of one sample (C,) or of a batch (N, C)")
    given, shape = tuple(t.shape), tuple(y.shape)
    if y.ndim == 1:
        y = xp.reshape(y, (1, -1))
        t = xp.reshape(t, (1, -1)) if size(t) == size(y) else t
    n, classes = y.shape
    if n == 0:  # the mean of no terms: NaN and NumPy's "invalid value" warning before
        raise ValueError(f"cross_entropy_error: y has shape {shape}, a batch of no samples, "
                         f"which has no mean loss; expected at least one sample")
    if size(t) == size(y):
        t = one_hot_classes(xp, xp.reshape(t, (n, classes)))
    elif size(t) != n or dtype_kind(t.dtype) not in "iu":
        indices = "one integer class index" if n == 1 else f"{n} integer class indices"
        raise ValueError(f"cross_entropy_error: t has shape {given} and dtype "
                         f"{dtype_name(t.dtype)}; expected one-hot labels of y's shape "
                         f"{shape} or {indices}")
    t = xp.reshape(xp.astype(t, _default_integer(xp)), (n, 1))  # (JAX warned of int64)
    if not is_device_array(t):
        low, high = int(xp.min(t)), int(xp.max(t))
        if low < 0 or high >= classes:
            raise ValueError(f"cross_entropy_error: labels must lie in 0..{classes - 1} for "
                             f"{classes} classes, got values {low}..{high}")
        picked = xp.take_along_axis(y, t, axis=1)
    else:  # clipped, so the gather stays inside the row; NaN where it had to be
        inside = (t >= 0) & (t < classes)
        picked = xp.take_along_axis(y, xp.clip(t, 0, classes - 1), axis=1)
        picked = xp.where(inside, picked, xp.full_like(picked, float("nan")))
    return -xp.sum(xp.log(picked + 1e-7)) / n


def sum_squared_error(y, t):
    """0.5 * sum((y - t)^2) over every element (4.2.1's "mean squared error", as the book's
    code names it): one-hot ``t`` of ``y``'s shape."""
    check_arrays("sum_squared_error", y=y, t=t)
    check_same_backend("sum_squared_error", y=y, t=t)
    if tuple(y.shape) != tuple(t.shape):
        raise ValueError(f"sum_squared_error: y has shape {tuple(y.shape)}, t "
                         f"{tuple(t.shape)}; expected one-hot labels of y's shape")
    xp = get_array_module(y, t)
    d = y - t
    return 0.5 * xp.sum(d * d)


def softmax_loss(x, t):
    """cross_entropy_error(softmax(x), t): the loss of scores ``x``."""
    return cross_entropy_error(softmax(x), t)


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """(input + 2 pad - filter) // stride + 1: the positions a window takes along one axis."""
    return (input_size + 2 * pad - filter_size) // stride + 1


def window_numbers(where, **numbers):
    """The sizes, strides and pads of a window as ints, checked: each a whole number
    (Python's or NumPy's integers; not a bool, a string or 1.5, which ``int()`` would have
    turned into 1), ``pad`` 0 or more, the others 1 or more. ``ValueError`` naming
    ``where`` and the number otherwise."""
    out = []
    for what, value in numbers.items():
        least = 0 if what == "pad" else 1
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise ValueError(f"{where}: {what} must be a whole number, got {value!r}")
        if value < least:
            raise ValueError(f"{where}: {what} must be at least {least}, got {value}")
        out.append(int(value))
    return out


def _windows(where, shape, filter_h, filter_w, stride, pad):
    """``(filter_h, filter_w, stride, pad, out_h, out_w)``: the window numbers checked (as
    ints), and the windows' grid over images of ``shape`` ``(N, C, H, W)``, checked to fit."""
    filter_h, filter_w, stride, pad = window_numbers(
        where, filter_h=filter_h, filter_w=filter_w, stride=stride, pad=pad)
    if len(shape) != 4:
        raise ValueError(f"{where}: expected images of shape (N, C, H, W), got shape "
                         f"{tuple(shape)}")
    h, w = shape[2] + 2 * pad, shape[3] + 2 * pad
    if filter_h > h or filter_w > w:
        raise ValueError(f"{where}: a {filter_h}x{filter_w} filter does not fit the padded "
                         f"{h}x{w} image (shape {tuple(shape)}, pad {pad})")
    return (filter_h, filter_w, stride, pad,
            conv_output_size(shape[2], filter_h, stride, pad),
            conv_output_size(shape[3], filter_w, stride, pad))


def _window_view(img, filter_h, filter_w, stride, out_h, out_w):
    """A strided view ``(N, out_h, out_w, C, filter_h, filter_w)`` of a padded ``(N, C, H, W)``
    array: window (i, j) of image n, without copying anything."""
    xp = get_array_module(img)
    s0, s1, s2, s3 = img.strides
    return xp.lib.stride_tricks.as_strided(
        img, (img.shape[0], out_h, out_w, img.shape[1], filter_h, filter_w),
        (s0, s2 * stride, s3 * stride, s1, s2, s3))


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Every filter window of a batch of images as one row: the book's im2col.

    ``input_data`` is ``(N, C, H, W)``; the result is ``(N * out_h * out_w,
    C * filter_h * filter_w)``, rows ordered by image, then window row,
    then window column, and each row by channel, then filter row, then
    filter column (the book's layout). In the input's dtype. Built from a
    strided view of the (padded) input in one copy, where the book copies
    window offset by window offset into a float64 buffer and transposes.
    """
    check_arrays("im2col", input_data=input_data)
    xp = get_array_module(input_data)
    filter_h, filter_w, stride, pad, out_h, out_w = _windows(
        "im2col", input_data.shape, filter_h, filter_w, stride, pad)
    n, c, h, w = input_data.shape
    if not hasattr(xp, "lib"):  # no strided views in the standard: its channel-major columns
        return xp.permute_dims(ops_for(input_data).im2col(input_data, filter_h, filter_w,
                                                          stride, pad, out_h, out_w), (1, 0))
    img = input_data
    if pad:
        img = xp.pad(input_data, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    view = _window_view(img, filter_h, filter_w, stride, out_h, out_w)
    return view.reshape(n * out_h * out_w, c * filter_h * filter_w)  # the one copy


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The adjoint of :func:`im2col`: each row's values added back to the pixels they came from.

    ``col`` is ``(N * out_h * out_w, C * filter_h * filter_w)`` as im2col
    makes it; the result is ``input_shape`` ``(N, C, H, W)``, in ``col``'s
    dtype. Where windows do not overlap (stride >= filter) every pixel gets
    at most one value, written in one pass through a strided view; else one
    strided addition per filter offset, as the book does. No atomics, so the
    sums come out the same every time.
    """
    check_arrays("col2im", col=col)
    xp = get_array_module(col)
    filter_h, filter_w, stride, pad, out_h, out_w = _windows(
        "col2im", tuple(input_shape), filter_h, filter_w, stride, pad)
    n, c, h, w = input_shape
    rows, columns = n * out_h * out_w, c * filter_h * filter_w
    if tuple(col.shape) != (rows, columns):
        raise ValueError(f"col2im: col has shape {tuple(col.shape)}; images of shape "
                         f"{tuple(input_shape)} with {filter_h}x{filter_w} windows, stride "
                         f"{stride} and pad {pad} have ({rows}, {columns}) (N * out_h * out_w, "
                         f"C * filter_h * filter_w)")
    if not hasattr(xp, "lib"):  # the standard's slice additions, on its channel-major columns
        return ops_for(col).col2im(xp.permute_dims(col, (1, 0)), input_shape, filter_h,
                                   filter_w, stride, pad, out_h, out_w)
    windows = col.reshape(n, out_h, out_w, c, filter_h, filter_w)
    img = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    if stride >= filter_h and stride >= filter_w:
        _window_view(img, filter_h, filter_w, stride, out_h, out_w)[...] = windows
    else:
        for y in range(filter_h):
            y_max = y + stride * out_h
            for x in range(filter_w):
                x_max = x + stride * out_w
                img[:, :, y:y_max:stride, x:x_max:stride] += \
                    windows[:, :, :, :, y, x].transpose(0, 3, 1, 2)
    return img[:, :, pad:h + pad, pad:w + pad]
