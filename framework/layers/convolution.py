"""The convolution layer of chapter 7, on im2col and one matrix product."""

from backends import check_same_backend, get_array_module, ops_for
from backends.arrays import check_arrays
from framework.functions import conv_output_size, window_numbers
from framework.layers.base import Layer, bias_of


class Convolution(Layer):
    """out[n, f] = sum_c W[f, c] * x[n, c] (cross-correlation, stride, zero padding) + b[f].

    Forward: out = W_col col + b, with ``W_col`` the filters ``W (FN, C, FH,
    FW)`` as rows and ``col`` every window as a column (im2col, transposed).
    Backward: with ``dout`` as ``(FN, N * out_h * out_w)``, dW = dout col^T,
    db = sum dout, dx = col2im(W_col^T dout). The book's shapes for W, x and
    out.

    Differences from the book:

    * ``W`` and ``b`` are kept by reference, so in-place updates reach the layer.
    * ``input_grad = False`` skips ``dx`` (the product and the col2im): a
      network sets it on its first layer, whose input is data.
    * The columns are channel-major (``backends.ops``' ``im2col``: each row
      one filter offset across all windows), and so is the output:
      an ``(N, FN, H, W)`` view of ``(FN, N, H, W)`` memory. Element-wise
      layers keep that layout, so the next convolution reads its input, and
      this one its ``dout``, without a transposing copy. In the input's
      dtype (the book's im2col builds float64 temporaries).
    * Forward and backward are ``backends.ops``' ``conv`` and ``conv_grad``
      (im2col, one product and col2im: one kernel each on a GPU; on the
      standard's path the input's gradient is added offset by offset). On the
      host, at stride 1, a compiled direct convolution that never builds the
      columns (:mod:`backends.host.conv`; ``self.col`` then holds the
      padded input), else the same three steps on every core.
    * ``forward(x, train_flg=False)`` (inference: a network's ``predict``
      and ``accuracy``) keeps neither the columns nor the input, which only
      ``backward`` needs: an evaluation holds one layer's columns at a time
      (DeepConvNet's six for 200 images would be 200 MB), and ``backward``
      after it says so. ``train_flg`` defaults to True, the book's call.
    * Wrong shapes raise ``ValueError`` naming the layer and the shapes.
    """

    takes_train_flg = True  # inference drops what only backward needs

    saved = ("x", "col", "dW", "db")

    def __init__(self, W, b, stride=1, pad=0, name="Convolution"):
        # a number (the book's Convolution(w, 0)): that bias for each output
        b = bias_of(W, b, W.shape[0] if getattr(W, "ndim", 0) == 4 else 0)
        check_arrays(name, W=W, b=b)
        check_same_backend(name, W=W, b=b)
        if W.ndim != 4 or b.shape != (W.shape[0],):
            raise ValueError(f"{name}: W must be 4-D (FN, C, FH, FW) and b of shape (FN,); "
                             f"got W {tuple(W.shape)} and b {tuple(b.shape)}")
        stride, pad = window_numbers(name, stride=stride, pad=pad)
        super().__init__(name)
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.input_grad = True
        self.x = None
        self.x_shape = None
        self.out_shape = None  # the last training forward's output: what backward takes
        self.col = None
        self.dW = None
        self.db = None

    def output_shape(self, input_shape):
        """``(FN, out_h, out_w)`` for one sample of shape ``(C, H, W)``, checked."""
        fn, c, fh, fw = self.W.shape
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: expected images of shape (N, C, H, W), got a batch "
                             f"of shape (N, {', '.join(map(str, input_shape))})")
        if input_shape[0] != c:
            raise ValueError(f"{self.name}: input has {input_shape[0]} channels, W expects {c} "
                             f"(input (N, {', '.join(map(str, input_shape))}), W "
                             f"{tuple(self.W.shape)})")
        h, w = input_shape[1] + 2 * self.pad, input_shape[2] + 2 * self.pad
        if fh > h or fw > w:
            raise ValueError(f"{self.name}: a {fh}x{fw} filter does not fit the padded "
                             f"{h}x{w} input (input (N, {', '.join(map(str, input_shape))}), "
                             f"pad {self.pad})")
        return (fn, conv_output_size(input_shape[1], fh, self.stride, self.pad),
                conv_output_size(input_shape[2], fw, self.stride, self.pad))

    def _forward(self, x):
        """``(out, col)`` for a batch ``(N, C, H, W)``, ``col`` its im2col columns."""
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected images of shape (N, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        _, out_h, out_w = self.output_shape(x.shape[1:])
        return ops_for(x).conv(x, self.W, self.b, self.stride, self.pad, out_h, out_w)

    def forward(self, x, train_flg=True):
        check_same_backend(self.name, x=x, W=self.W)
        self.x = self.col = None  # the last step's columns go before this pass makes its own
        try:
            out, col = self._forward(x)
        except (AttributeError, TypeError):
            self._check_arrays("forward", x=x)
            raise
        if train_flg:
            self.x, self.col, self.out_shape = x, col, out.shape
        self.x_shape = x.shape
        return out

    def backward(self, dout):
        if self.col is None:
            raise ValueError(f"{self.name}: backward needs a forward pass in training mode "
                             f"first (forward(x) or forward(x, train_flg=True)); the last was "
                             f"{'inference, which keeps no columns' if self.x_shape else 'none'}")
        if getattr(dout, "shape", None) != self.out_shape:  # (a list: named below)
            self._check_arrays("backward", dout=dout)
            raise ValueError(f"{self.name}: dout has shape {tuple(dout.shape)}; the forward "
                             f"pass's output had {tuple(self.out_shape)}")
        try:
            dx, self.dW, self.db = ops_for(dout).conv_grad(dout, self.x, self.W, self.col,
                                                           self.stride, self.pad,
                                                           self.input_grad)
        except (AttributeError, TypeError):
            self._check_arrays("backward", dout=dout)
            raise
        return dx

    def forward_stack(self, x, train_flg=True):
        """The forward pass for each of a stack ``(K, N, C, H, W)``, without side effects."""
        xp = get_array_module(x)
        k, n = x.shape[:2]
        out, _ = self._forward(xp.reshape(x, (k * n,) + tuple(x.shape[2:])))
        return xp.reshape(out, (k, n) + tuple(out.shape[1:]))

    def perturbed_outputs(self, x, param, index, delta, train_flg=True):
        """Outputs ``(K, N, FN, out_h, out_w)`` of K copies, copy k with element ``index[k]``
        (flat) of ``W`` or ``b`` moved by ``delta``.

        The output is linear in W: moving W[f, c, i, j] by d adds d times
        im2col's column (c, i, j) to output channel f; moving b[f] adds d
        to channel f. So each copy costs one column, not a convolution (the operations'
        ``perturbed_copies``).
        """
        xp = get_array_module(x)
        base, _ = self._forward(x)  # (N, FN, out_h, out_w)
        n, fn, out_h, out_w = base.shape
        fh, fw = self.W.shape[2:]
        k = index.shape[0]
        ops = ops_for(x)
        if param == "W":
            col = ops.im2col(x, fh, fw, self.stride, self.pad, out_h, out_w)
            channel, row = index // col.shape[0], index % col.shape[0]
            moved = delta * xp.reshape(xp.take(col, row, axis=0), (k, n, out_h, out_w))
        elif param == "b":
            channel, moved = index, delta
        else:
            raise ValueError(f"{self.name}: no parameter {param!r}; expected 'W' or 'b'")
        return ops.perturbed_copies(base, channel, moved, axis=1)
