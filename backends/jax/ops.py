"""The JAX wing: on a GPU or TPU the convolution on XLA's own (``lax.conv_general_dilated``,
which runs cuDNN's there), its gradients from JAX's transpose rules; everything else,
and the convolution on the CPU, the standard's code (:class:`StandardOps`), which XLA
fuses inside the compiled step.

On this project's 2-core CPU the standard's im2col measured faster than XLA's CPU
convolution inside the compiled DeepConvNet step (docs/performance.md, "JAX"), so the
CPU keeps it; ``xla_conv`` says which runs. Where XLA's convolution runs, ``conv`` keeps
the input (not im2col's columns) for ``conv_grad``, and ``conv_grad`` takes ``dx`` and
``dW`` from ``jax.vjp`` of the convolution (inside the compiled step XLA drops the
forward pass it repeats). Tested against the reference like every wing
(``tests/backends/test_ops.py``).
"""

import jax
from jax import lax

from backends.ops.reference import StandardOps

LAYOUT = ("NCHW", "OIHW", "NCHW")  # the book's layouts: images, filters, outputs


def _convolve(x, W, stride, pad):
    return lax.conv_general_dilated(x, W, (stride, stride), [(pad, pad), (pad, pad)],
                                    dimension_numbers=LAYOUT)


class JaxOps(StandardOps):
    """The standard's operations, the convolution on XLA's where ``xla_conv`` (see the
    module)."""

    name = "jax"

    def __init__(self, xp, backend=None, xla_conv=None):
        super().__init__(xp, backend)
        self.xla_conv = jax.default_backend() != "cpu" if xla_conv is None else xla_conv

    def conv(self, x, W, b, stride, pad, out_h, out_w):
        if not self.xla_conv:
            return super().conv(x, W, b, stride, pad, out_h, out_w)
        return _convolve(x, W, stride, pad) + b[None, :, None, None], x

    def conv_grad(self, dout, x, W, saved, stride, pad, input_grad=True):
        if not self.xla_conv:
            return super().conv_grad(dout, x, W, saved, stride, pad, input_grad)
        _, pullback = jax.vjp(lambda x_, W_: _convolve(x_, W_, stride, pad), x, W)
        dx, dW = pullback(dout)
        db = self.xp.sum(dout, axis=(0, 2, 3))
        return (dx if input_grad else None), dW, db
