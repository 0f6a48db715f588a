"""Max pooling (chapter 7), by strided slices rather than im2col."""

from backends import ops_for
from framework.functions import conv_output_size, window_numbers
from framework.layers.base import Layer


class Pooling(Layer):
    """out[n, c, i, j] = max of x[n, c] over the window at (i * stride, j * stride).

    The book's signature as its repository has it, ``Pooling(pool_h, pool_w, stride=2,
    pad=0)`` (the author's change of 2020, "Change Pooling's stride 2 from 1": the printed
    code of 2016 said 1); its networks, and ours, pass ``stride=2`` all the same.

    Backward routes each output's gradient to the first maximum of its
    window (row by row, as ``argmax`` picks it) and adds where windows overlap.

    Differences from the book:

    * Padding is -inf, not 0: with 0 a window of negative inputs at the
      border would return 0, a value that is not in the input.
    * No im2col: the window's ph * pw offsets are strided slices of the
      input, compared in turn (for 2x2 pooling, four slices and a few
      element-wise passes, where the book's im2col copy and ``argmax`` over
      rows of four cost several times as much); ``backends.ops``' ``max_pool``
      and ``max_pool_grad``, on every core on the host. ``dx`` keeps the
      input's memory layout (channel-major after a convolution).
    * Bad shapes raise ``ValueError`` naming the layer and the shapes.
    """

    saved = ("x", "arg_max")

    def __init__(self, pool_h, pool_w, stride=2, pad=0, name="Pooling"):
        pool_h, pool_w, stride, pad = window_numbers(name, pool_h=pool_h, pool_w=pool_w,
                                                     stride=stride, pad=pad)
        if 2 * pad > min(pool_h, pool_w):
            # wider padding makes windows of padding alone, whose maximum is -inf
            raise ValueError(f"{name}: pad must be at most half the window, got pad {pad} for "
                             f"a {pool_h}x{pool_w} window")
        super().__init__(name)
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x = None
        self.arg_max = None

    def output_shape(self, input_shape):
        """``(C, out_h, out_w)`` for one sample of shape ``(C, H, W)``, checked."""
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: expected images of shape (N, C, H, W), got a batch "
                             f"of shape (N, {', '.join(map(str, input_shape))})")
        c, h, w = input_shape
        if self.pool_h > h + 2 * self.pad or self.pool_w > w + 2 * self.pad:
            raise ValueError(f"{self.name}: a {self.pool_h}x{self.pool_w} window does not fit "
                             f"the padded {h + 2 * self.pad}x{w + 2 * self.pad} input (input "
                             f"(N, {c}, {h}, {w}), pad {self.pad})")
        return (c, conv_output_size(h, self.pool_h, self.stride, self.pad),
                conv_output_size(w, self.pool_w, self.stride, self.pad))

    def _forward(self, x):
        """``(out, arg_max)`` for a batch ``(..., C, H, W)``; arg_max indexes the window."""
        _, out_h, out_w = self.output_shape(x.shape[-3:])
        return ops_for(x).max_pool(x, self.pool_h, self.pool_w, self.stride, self.pad,
                                   out_h, out_w)

    def forward(self, x):
        try:
            ndim = x.ndim
        except AttributeError:
            self._check_arrays("forward", x=x)
            raise
        if ndim != 4:
            raise ValueError(f"{self.name}: expected images of shape (N, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        out, self.arg_max = self._forward(x)
        self.x = x
        return out

    def backward(self, dout):
        try:
            if dout.shape != self.arg_max.shape:  # else a kernel would read past its end
                raise ValueError(f"{self.name}: dout has shape {tuple(dout.shape)}; the "
                                 f"forward pass's output had {tuple(self.arg_max.shape)}")
            return ops_for(dout).max_pool_grad(dout, self.arg_max, self.x, self.pool_h,
                                               self.pool_w, self.stride, self.pad)
        except Exception:  # what kind the library raises for None
            self._check_kept(dout=dout)
            raise

    def forward_stack(self, x, train_flg=True):
        """The forward pass for each of a stack ``(K, N, C, H, W)``, without side effects."""
        return self._forward(x)[0]
