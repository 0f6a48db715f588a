"""The convolutional passes' CUDA kernels (``kernels/conv.cu``): their launch arguments.

On the GPU the array-code versions of ``im2col``, ``col2im``, ``max_pool``
and ``max_pool_grad`` are several launches each: a pad and a strided copy
for im2col, a zeroing and fh * fw strided additions for col2im, three
passes per window offset for pooling. Here each is one kernel, and the two
backward passes are gathers (each output element sums what reaches it, in
a fixed order): no atomics, the same sums on every run, and in the same
order as the array code on the host, so the results agree bit for bit.

Each kernel walks its outputs in a grid-stride loop and takes every array's
strides (in elements), so any memory layout works: the channel-major
arrays the convolution layer makes are read and written in place.

This module does not import CuPy: :func:`launch_args` packs a call's
arguments as NumPy scalars and arrays, which :class:`backends.cuda.ops.CupyOps`
hands to a ``cupy.RawKernel`` and ``tests/backends/cuda/test_conv.py`` to the same
source compiled for the CPU (the loop then runs every element in turn), so
the kernels' index arithmetic is tested on machines without a GPU.
"""

import numpy

from backends.cuda.sources import element_strides

KERNEL_NAMES = ("xpnet_im2col", "xpnet_col2im", "xpnet_max_pool", "xpnet_max_pool_grad")


def launch_args(name, *arrays, **sizes):
    """``(args, total)`` for kernel ``name``: its arguments in order, and how many
    elements it writes (the grid-stride loop's length).

    ``arrays`` are the kernel's arrays in its order (inputs, then outputs);
    ``sizes``: ``n, c, h, w`` (the image), ``fh, fw`` or ``ph, pw`` (the window),
    ``stride, pad, oh, ow``.
    """
    if name not in KERNEL_NAMES:
        raise ValueError(f"no conv kernel named {name!r}; expected one of "
                         f"{', '.join(KERNEL_NAMES)}")
    i32 = numpy.int32
    s = sizes
    if name in ("xpnet_im2col", "xpnet_col2im"):
        head = (i32(s["n"]), i32(s["c"]), i32(s["h"]), i32(s["w"]), i32(s["fh"]), i32(s["fw"]),
                i32(s["stride"]), i32(s["pad"]), i32(s["oh"]), i32(s["ow"]))
        source, dest = arrays
        if name == "xpnet_im2col":
            return (source, dest) + head + element_strides(source), dest.size
        return (source, dest) + head + element_strides(dest), dest.size
    head = (i32(s["n"]), i32(s["c"]), i32(s["h"]), i32(s["w"]), i32(s["ph"]), i32(s["pw"]),
            i32(s["stride"]), i32(s["pad"]), i32(s["oh"]), i32(s["ow"]))
    if name == "xpnet_max_pool":
        x, out, arg = arrays
        return ((x, out, arg) + head + (x.dtype.type(-numpy.inf),) + element_strides(x)
                + element_strides(out)), out.size
    dout, arg, dx = arrays  # xpnet_max_pool_grad
    return ((dout, arg, dx) + head + element_strides(dout) + element_strides(arg)
            + element_strides(dx)), dx.size
