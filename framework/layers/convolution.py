"""The convolution layer of chapter 7, on im2col and one matrix product."""

from backends import check_same_backend, get_array_module
from backends.ops import ops_for
from framework.functions import col2im, conv_output_size, im2col


class Convolution:
    """out[n, f] = sum_c W[f, c] * x[n, c] (cross-correlation, stride, zero padding) + b[f].

    Forward: ``col = im2col(x)``, out = col W_col^T + b, with ``W_col`` the
    filters ``W (FN, C, FH, FW)`` as rows. Backward: with ``dout`` as
    ``(N * out_h * out_w, FN)``, dW = dout^T col, db = sum dout,
    dx = col2im(dout W_col). The book's shapes and layouts.

    Differences from the book:

    * ``W`` and ``b`` are kept by reference, so in-place updates reach the layer.
    * ``input_grad = False`` skips ``dx`` (the product and the col2im): a
      network sets it on its first layer, whose input is data.
    * im2col and col2im work in the input's dtype (the book's build float64
      temporaries), and dW comes out of one product in its final layout.
    * Wrong shapes raise ``ValueError`` naming the layer and the shapes.
    """

    def __init__(self, W, b, stride=1, pad=0, name="Convolution"):
        if W.ndim != 4 or b.shape != (W.shape[0],):
            raise ValueError(f"{name}: W must be 4-D (FN, C, FH, FW) and b of shape (FN,); "
                             f"got W {tuple(W.shape)} and b {tuple(b.shape)}")
        if int(stride) < 1 or int(pad) < 0:
            raise ValueError(f"{name}: stride must be at least 1 and pad at least 0, got "
                             f"stride={stride}, pad={pad}")
        self.name = name
        self.W = W
        self.b = b
        self.stride = int(stride)
        self.pad = int(pad)
        self.input_grad = True
        self.x_shape = None
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
        """``(out, col)`` for a batch ``(N, C, H, W)``."""
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected images of shape (N, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        fn, out_h, out_w = self.output_shape(x.shape[1:])
        col = im2col(x, self.W.shape[2], self.W.shape[3], self.stride, self.pad)
        out = ops_for(x).matmul(col, self.W.reshape(fn, -1).T, bias=self.b)
        return out.reshape(x.shape[0], out_h, out_w, fn).transpose(0, 3, 1, 2), col

    def forward(self, x):
        check_same_backend(self.name, x=x, W=self.W)
        out, self.col = self._forward(x)
        self.x_shape = x.shape
        return out

    def backward(self, dout):
        fn, c, fh, fw = self.W.shape
        ops = ops_for(dout)
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = dout.sum(axis=0)
        self.dW = ops.matmul(dout.T, self.col).reshape(fn, c, fh, fw)
        if not self.input_grad:
            return None
        dcol = ops.matmul(dout, self.W.reshape(fn, -1))
        return col2im(dcol, self.x_shape, fh, fw, self.stride, self.pad)

    def forward_stack(self, x):
        """The forward pass for each of a stack ``(K, N, C, H, W)``, without side effects."""
        k, n = x.shape[:2]
        out, _ = self._forward(x.reshape((k * n,) + tuple(x.shape[2:])))
        return out.reshape((k, n) + tuple(out.shape[1:]))

    def perturbed_outputs(self, x, param, index, delta):
        """Outputs ``(K, N, FN, out_h, out_w)`` of K copies, copy k with element ``index[k]``
        (flat) of ``W`` or ``b`` moved by ``delta``.

        The output is linear in W: moving W[f, c, i, j] by d adds d times
        im2col's column (c, i, j) to output channel f; moving b[f] adds d
        to channel f. So each copy costs one column, not a convolution.
        """
        xp = get_array_module(x)
        base, col = self._forward(x)  # (N, FN, out_h, out_w)
        n, fn, out_h, out_w = base.shape
        k = index.shape[0]
        out = xp.broadcast_to(base, (k,) + base.shape).copy()
        copies = xp.arange(k)[:, None]
        samples = xp.arange(n)[None, :]
        if param == "W":
            channel, column = xp.divmod(index, col.shape[1])
            added = col[:, column].T.reshape(k, n, out_h, out_w)  # (K, N, out_h, out_w)
            out[copies, samples, channel[:, None]] += delta * added
        elif param == "b":
            out[copies, samples, index[:, None]] += delta
        else:
            raise ValueError(f"{self.name}: no parameter {param!r}; expected 'W' or 'b'")
        return out
