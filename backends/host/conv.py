"""The host's direct convolution: the compiled kernels driven over the cores, no im2col.

im2col + BLAS spends most of a host convolution moving memory (DeepConvNet's
second layer writes a 45 MB column matrix to use each element in 16
multiply-adds). The kernels of ``kernels/conv.h`` never build the columns:
they read the zero-padded input with each channel one flat row, where a
filter tap is a fixed shift along the row::

    out[f, j] = b[f] + sum_{c, i, k} W[f, c, i, k] * x[c, j + i * Wp + k]

for the grid position ``j = (n Hp + y) Wp + x`` of output pixel ``(n, y, x)``.
This module lays the data out on that grid and hands ranges of it to the
pool's threads (ctypes lets go of the GIL during a call):

* forward, and dx at stride 1 (the same forward on ``dout`` padded by
  ``filter - 1 - pad``, the filters turned 180 degrees and their two axes
  swapped): the filter-vectorised kernel ``conv_px`` where there are two
  vectors of filters or more, else the grid kernel ``conv``;
* dW: ``dw_px`` on ``dout`` copied pixel-major, or ``dw`` on ``dout`` placed
  on the forward's grid, as partial sums over ranges added in order, so the
  result depends on the thread count, never on timing.

Only stride 1 (every convolution of the book's networks), float32 and
float64: :class:`backends.host.ops.HostOps` decides and keeps im2col for the rest.
"""

import collections

from backends.host import build

# What the forward keeps for backward: the zero-padded input, each channel one row
# (``data (C, >= length + reach)``), its images ``hp x wp``, ``length`` grid positions
# computed (whole kernel blocks).
PaddedGrid = collections.namedtuple("PaddedGrid", "data hp wp length")


def by_filters(kernels, filters, itemsize):
    """Whether the kernels vectorised over the filters pay: two or more whole vectors of
    them (with one, each tap's few loads feed as few multiply-adds, and the grid kernels
    measured faster: Conv2 of DeepConvNet, 16 filters)."""
    vector = kernels.vector_bytes // itemsize
    return filters % vector == 0 and filters >= 2 * vector


def forward(ops, kernels, x, W, b, pad, out_h, out_w):
    """``(out (FN, N, out_h, out_w), PaddedGrid)`` for ``x (N, C, H, W)`` at stride 1."""
    n, c, h, w = x.shape
    fn, _, fh, fw = W.shape
    block = kernels.block[x.dtype.name]
    hp, wp = h + 2 * pad, w + 2 * pad
    length = -(-n * hp * wp // block) * block
    grid = PaddedGrid(to_grid(ops, x.transpose(1, 0, 2, 3), hp, wp, pad, pad,
                              length + (fh - 1) * wp + fw - 1), hp, wp, length)
    return convolve(ops, kernels, grid, n, W, b, out_h, out_w), grid


def backward(ops, kernels, dout, x, W, grid, pad, input_grad):
    """``(dx or None, dW, db)`` from what :func:`forward` kept; dx as ``(C, N, H, W)``."""
    xp = ops.xp
    fn, c, fh, fw = W.shape
    n, _, h, w = x.shape
    out_h, out_w = dout.shape[2:]
    dtype = dout.dtype.name
    d = dout.transpose(1, 0, 2, 3)  # (FN, N, out_h, out_w)
    qh, qw = fh - 1 - pad, fw - 1 - pad  # dx: dout padded by filter - 1 - pad
    block = kernels.block[dtype]
    hq, wq = out_h + 2 * qh, out_w + 2 * qw  # = h + fh - 1, w + fw - 1
    length = -(-n * hq * wq // block) * block
    padded = None
    if by_filters(kernels, fn, dout.itemsize):
        dW, db = pixel_dw(ops, kernels, d, grid, W.shape)
    else:
        if input_grad and (hq, wq) == (grid.hp, grid.wp):
            # a "same" convolution (filter 2 pad + 1): dout padded for dx is dout
            # on the forward's grid shifted by (qh, qw), so one copy serves both
            shift = qh * wq + qw
            padded = to_grid(ops, d, hq, wq, qh, qw, grid.length + 2 * shift)
            grad = padded[:, shift:shift + grid.length]
        else:  # dout on the forward's grid, 0 where the grid has no output
            grad = to_grid(ops, d, grid.hp, grid.wp, 0, 0, grid.length)
        db = grad.sum(axis=1)
        dW = grid_dw(ops, kernels, dtype, grad, grid, W.shape)
    if not input_grad:
        return None, dW, db
    if qh < 0 or qw < 0:  # padding wider than the filter: some pixels reach no output
        dcol = ops.matmul(W.reshape(fn, -1).T, xp.ascontiguousarray(d).reshape(fn, -1))
        dx = ops.col2im(dcol, x.shape, fh, fw, 1, pad, out_h, out_w)
        return dx.transpose(1, 0, 2, 3), dW, db
    # dx: the padded dout correlated with the filters turned 180 degrees and
    # their axes swapped (C, FN, fh, fw)
    if padded is None:
        padded = to_grid(ops, d, hq, wq, qh, qw, length + (fh - 1) * wq + fw - 1)
    flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    dx = convolve(ops, kernels, PaddedGrid(padded, hq, wq, length), n, flipped,
                  xp.zeros(c, dtype=dout.dtype), h, w)
    return dx, dW, db


def convolve(ops, kernels, grid, n, W, b, out_h, out_w):
    """``(F, N, out_h, out_w)``: the grid's images correlated with ``W (F, C, fh, fw)``,
    plus ``b``. Vectorised over the filters, at the valid output pixels only, where
    :func:`by_filters`; else a block of grid positions at a time, vectorised over
    the pixels whatever F, at a border's extra work."""
    xp = ops.xp
    fn, c, fh, fw = W.shape
    dtype = W.dtype.name
    data, hp, wp = grid.data, grid.hp, grid.wp
    out = xp.empty((fn, n, out_h, out_w), dtype=W.dtype)
    b = xp.ascontiguousarray(b)
    pixels = n * out_h * out_w
    if by_filters(kernels, fn, W.itemsize):
        taps = xp.ascontiguousarray(W.transpose(1, 2, 3, 0))  # (C, fh, fw, F)
        ops.each_part(lambda lo, hi: kernels.conv_px[dtype](
            x=data.ctypes.data, xs=data.shape[1], wt=taps.ctypes.data, b=b.ctypes.data,
            F=fn, C=c, KH=fh, KW=fw, hp=hp, wp=wp, oh=out_h, ow=out_w, out=out.ctypes.data,
            os=pixels, lo=lo, hi=hi),
            pixels, macs=W.size * pixels)
        return out
    W = xp.ascontiguousarray(W)
    block = kernels.block[dtype]
    blocks = grid.length // block
    ops.each_part(lambda lo, hi: kernels.conv[dtype](
        x=data.ctypes.data, xs=data.shape[1], w=W.ctypes.data, b=b.ctypes.data, F=fn, C=c,
        KH=fh, KW=fw, hp=hp, wp=wp, oh=out_h, ow=out_w, cells=n * hp * wp,
        out=out.ctypes.data, os=pixels, lo=lo * block, hi=hi * block),
        blocks, macs=W.size * grid.length)
    return out


def pixel_dw(ops, kernels, d, grid, shape):
    """``(dW, db)`` from ``d (F, N, out_h, out_w)`` copied pixel-major: vectorised over
    the filters, partial sums over ranges of pixels added in order."""
    xp = ops.xp
    fn, c, fh, fw = shape
    _, n, out_h, out_w = d.shape
    pixels = n * out_h * out_w
    flat = d.reshape(fn, pixels)
    by_pixel = xp.empty((pixels, fn), dtype=d.dtype)
    ops.each_part(lambda lo, hi: by_pixel[lo:hi].__setitem__(Ellipsis, flat[:, lo:hi].T),
                  pixels, by_pixel.nbytes)
    macs = fn * c * fh * fw * pixels
    count = ops.parts(pixels, macs=macs)
    bounds = [pixels * i // count for i in range(count + 1)]
    partial = xp.zeros((count, c * fh * fw, fn), dtype=d.dtype)
    run = kernels.dw_px[d.dtype.name]

    def work(lo, hi):
        for i in range(lo, hi):
            run(d=by_pixel.ctypes.data, F=fn, x=grid.data.ctypes.data, xs=grid.data.shape[1],
                C=c, KH=fh, KW=fw, hp=grid.hp, wp=grid.wp, oh=out_h, ow=out_w,
                dwt=partial[i].ctypes.data, lo=bounds[i], hi=bounds[i + 1])

    ops.each_part(work, count, macs=macs)
    taps = partial[0] if count == 1 else partial.sum(axis=0)  # (C * fh * fw, F)
    return xp.ascontiguousarray(taps.T).reshape(shape), flat.sum(axis=1)


def to_grid(ops, planes, hp, wp, top, left, row):
    """``planes (C, N, H, W)`` as rows of length ``row``: each sample an ``hp x wp``
    image with the planes at ``(top, left)``, zeros around them and after."""
    xp = ops.xp
    c, n, h, w = planes.shape
    grid = xp.empty((c, row), dtype=planes.dtype)
    grid[:, n * hp * wp:] = 0
    images = grid[:, :n * hp * wp].reshape(c, n, hp, wp)

    def work(lo, hi):
        part = images[:, lo:hi]
        part[:, :, :top] = 0
        part[:, :, top + h:] = 0
        part[:, :, top:top + h, :left] = 0
        part[:, :, top:top + h, left + w:] = 0
        part[:, :, top:top + h, left:left + w] = planes[:, lo:hi]

    ops.each_part(work, n, grid.nbytes)
    return grid


def grid_dw(ops, kernels, dtype, grad, grid, shape):
    """dW as partial sums over ranges of the grid, added in order; ``grad``'s rows
    (dout on the grid) may be a view into longer ones."""
    xp = ops.xp
    step = kernels.vector_bytes // grad.itemsize
    vectors = grid.length // step
    fn, c, fh, fw = shape
    count = ops.parts(vectors, macs=fn * c * fh * fw * grid.length)
    bounds = [vectors * i // count * step for i in range(count + 1)]
    partial = xp.zeros((count,) + tuple(shape), dtype=grad.dtype)

    def work(lo, hi):
        for i in range(lo, hi):
            kernels.dw[dtype](d=grad.ctypes.data, ds=grad.strides[0] // grad.itemsize,
                              x=grid.data.ctypes.data, xs=grid.data.shape[1], F=fn, C=c,
                              KH=fh, KW=fw, wp=grid.wp, dw=partial[i].ctypes.data,
                              lo=bounds[i], hi=bounds[i + 1], chunk=build.DW_CHUNK)

    ops.each_part(work, count, macs=fn * c * fh * fw * grid.length)
    return partial[0] if count == 1 else partial.sum(axis=0)
