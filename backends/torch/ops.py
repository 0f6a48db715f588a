"""The torch wing: the operations on PyTorch's own functions, so that each device's library
does the work (oneDNN on the CPU, cuDNN on NVIDIA's GPUs, MIOpen on AMD's, MPS on Apple's).

:class:`TorchOps` keeps the contract of :class:`backends.ops.Ops` and the reference's
results (tested against :class:`backends.ops.StandardOps` on the same tensors), and
calls ``torch`` directly where array-api-compat's wrappers would cost calls of their
own. No autograd: a network call runs with PyTorch's autograd off (:meth:`TorchOps.scope`,
:class:`NoGrad`), the backend detaches what it sends (a user's tensor that requires
gradients), and the layers keep computing their own backward. Where it differs from the
reference:

* ``conv`` runs ``conv2d`` and keeps the input (not im2col's columns) for ``conv_grad``,
  which is one ``convolution_backward`` (dx, dW and db); its output is PyTorch's own
  ``(N, F, H, W)`` layout.
* ``max_pool``'s ``arg`` is PyTorch's index of each window's maximum in its plane (an
  int64 tensor), which ``max_pool_grad`` hands back to PyTorch's own backward. Both
  route the gradient to the window's first maximum; a device whose pooling picks
  another on ties (asked once a device) keeps the reference's code, as do paddings
  PyTorch refuses (more than half the window).
* the loss is ``log_softmax`` then ``nll_loss``; on a GPU a label past the last class
  gives a NaN loss (PyTorch would stop the process's use of the GPU with a device-side
  assert), on the CPU the IndexError.
* the optimizers' updates are PyTorch's in-place arithmetic (``sub_``, ``lerp_``),
  equal to the reference's formulas up to rounding.
* ReLU keeps its output as the mask (positive exactly where x > 0) and its backward is
  PyTorch's ``threshold_backward``: a NaN ``dout`` where x <= 0 gives 0 (the book's
  ``dout[mask] = 0``), where ``dout * keep`` gives NaN; at a NaN input the gradient
  passes, as PyTorch's own ReLU lets it (the contract leaves that open).

* dropout's SplitMix64 runs on int64 tensors, whose multiplication wraps as uint64's
  would and whose right shifts are masked to logical ones: the same bits as the
  reference's 32-bit halves in a tenth of the operations (on the CPU and CUDA; other
  devices, MPS without float64 among them, keep the halves).

The numerical gradient's copies and im2col itself stay the reference's (nothing in a
training step calls im2col here).
"""

import threading

import torch
import torch.nn.functional as F

from backends import splitmix
from backends.ops.reference import StandardOps

NO_LABEL = -2 ** 63  # nll_loss's ignore_index: none a label can be (its default, -100, can)
WRAPPING = ("cpu", "cuda")  # devices whose int64 arithmetic the generator relies on


def _signed(c):
    """A 64-bit constant as the int64 with its bits."""
    return c - 2 ** 64 if c >= 2 ** 63 else c


def _shr(z, s):
    """The logical right shift of int64 ``z``'s bits by ``s``."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix(z):
    """SplitMix64's finaliser on int64 tensors (wrapping): :func:`backends.splitmix.mix64`."""
    z = z ^ _shr(z, 30)
    z = z * _signed(splitmix.MIX1)
    z = z ^ _shr(z, 27)
    z = z * _signed(splitmix.MIX2)
    return z ^ _shr(z, 31)


class NoGrad:
    """PyTorch's autograd off within a network call, as it was after: re-entrant (a call
    inside another, of another network, sharing these operations) and per thread, as
    PyTorch's grad mode is. xpnet computes its own backward; a tensor of the user's that
    requires gradients would otherwise make every result record a graph, one that grew with
    each step through the parameters updated in place."""

    def __init__(self):
        self._local = threading.local()

    def __enter__(self):
        local = self._local
        depth = getattr(local, "depth", 0)
        if not depth:
            local.before = torch.is_grad_enabled()
            torch.set_grad_enabled(False)
        local.depth = depth + 1

    def __exit__(self, *exc):
        local = self._local
        local.depth -= 1
        if not local.depth:
            torch.set_grad_enabled(local.before)
        return False


class TorchOps(StandardOps):
    """The operations on PyTorch's functions (see the module)."""

    name = "torch"
    raises_for_bad_labels = True  # nll_loss on the CPU, no label ignored

    def __init__(self, xp, backend=None):
        super().__init__(xp, backend)
        self._no_grad = NoGrad()
        self._first_max = {}  # device -> whether its pooling keeps the first of tied maxima
        self._classes = {}  # (C, device) -> arange(C), for one-hot comparisons on a device
        self._minus_ones = {}  # (N, dtype, device) -> a (N, 1) column of -1, for the gradient

    def scope(self):
        """A network call runs with PyTorch's autograd off (:class:`NoGrad`)."""
        return self._no_grad

    # --- dense layers ----------------------------------------------------------------

    def matmul(self, a, b, bias=None, out=None):
        if bias is None:
            return torch.mm(a, b) if out is None else torch.mm(a, b, out=out)
        return torch.addmm(bias, a, b) if out is None else torch.addmm(bias, a, b, out=out)

    def affine_grad(self, x, dout, W, input_grad=True):
        dW = torch.mm(x.T, dout)
        db = dout.sum(0)
        return (torch.mm(dout, W.T) if input_grad else None), dW, db

    def relu(self, x, mask=True):
        out = torch.relu(x)
        out.add_(0.0)  # PyTorch keeps the sign of -0.0; the contract's zeros are +0
        # the output is the mask: positive exactly where x > 0 (a NaN is no more than 0),
        # and a boolean x > 0 would be one more pass over the activations
        return out, (out if mask else None)

    def relu_backward(self, dout, keep):
        # dout where keep > 0, else 0: PyTorch's own ReLU backward, one pass
        return torch.ops.aten.threshold_backward(dout, keep, 0.0)

    def relu_mask(self, keep):
        return ~(keep > 0)

    # --- softmax and its loss -------------------------------------------------------

    def softmax(self, x):
        return torch.softmax(x, -1)

    def log_softmax(self, x):
        return torch.log_softmax(x, -1)

    @staticmethod
    def _on_device(t):
        return not t.is_cpu

    def softmax_cross_entropy(self, x, t, rows):
        logp = torch.log_softmax(x, 1)
        y = torch.exp(logp)
        if t.ndim == 2:  # one-hot rows
            return -(t * logp).sum() / x.shape[0], y, t
        labels = t if t.dtype == torch.int64 else t.long()
        if not self._on_device(t):  # an IndexError for a bad label; none is ignored
            return F.nll_loss(logp, labels, ignore_index=NO_LABEL), y, t
        # on a device: such a sample reads column 0 and its loss is NaN (see the module)
        valid = (labels >= 0) & (labels < x.shape[1])
        losses = F.nll_loss(logp, torch.where(valid, labels, 0), reduction="none",
                            ignore_index=NO_LABEL)
        return torch.where(valid, losses, float("nan")).mean(), y, t

    def softmax_cross_entropy_grad(self, y, t, scale, rows):
        if t.ndim == 2:
            dx = y - t
            dx *= scale
            return dx
        labels = t if t.dtype == torch.int64 else t.long()
        if not self._on_device(t):  # -1 added at each label, by scatter_add (a few us)
            key = (y.shape[0], y.dtype)
            ones = self._minus_ones.get(key)
            if ones is None:
                ones = self._minus_ones[key] = torch.full((y.shape[0], 1), -1.0,
                                                          dtype=y.dtype)
            dx = y.scatter_add(1, labels.unsqueeze(1), ones)
        else:  # no index past a row on a device: compare with arange(C)
            key = (y.shape[1], y.device)
            classes = self._classes.get(key)
            if classes is None:
                classes = self._classes[key] = torch.arange(y.shape[1], device=y.device)
            dx = y - (labels.unsqueeze(1) == classes).to(y.dtype)
        dx.mul_(scale)
        return dx

    # --- optimizers (in place) --------------------------------------------------------

    def sgd_update(self, p, g, lr):
        return p.sub_(g, alpha=lr)

    def adam_update(self, p, g, m, v, lr_t, beta1, beta2):
        m.lerp_(g, 1 - beta1)  # m + (1 - beta1)(g - m)
        v.lerp_(g * g, 1 - beta2)
        step = m / v.sqrt().add_(1e-7)
        step *= lr_t.to(p.dtype)
        p.sub_(step)
        return p, m, v

    # --- the Trainer's eager step -----------------------------------------------------

    def set_at(self, a, i, value):
        a[i] = value  # the tensor's own write: 1.2 us here, array-api-extra's at() 5.5 us
        return a

    # --- convolution and pooling ----------------------------------------------------------

    def conv(self, x, W, b, stride, pad, out_h, out_w):
        return F.conv2d(x, W, b, stride, pad), x

    def conv_grad(self, dout, x, W, saved, stride, pad, input_grad=True):
        dx, dW, db = torch.ops.aten.convolution_backward(
            dout, x, W, [W.shape[0]], [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1,
            [bool(input_grad), True, True])
        return (dx if input_grad else None), dW, db

    def _keeps_first_max(self, device):
        """Whether this device's max pooling picks the first of tied maxima (row-major in
        the window), as the reference: asked once with a tied window."""
        known = self._first_max.get(device)
        if known is None:
            tied = torch.tensor([[[[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]]], device=device)
            _, index = F.max_pool2d(tied, (2, 3), 1, 0, return_indices=True)
            known = self._first_max[device] = int(index.reshape(-1)[0]) == 1
        return known

    def max_pool(self, x, ph, pw, stride, pad, out_h, out_w):
        if 2 * pad > min(ph, pw) or x.ndim < 3 or not self._keeps_first_max(x.device):
            return super().max_pool(x, ph, pw, stride, pad, out_h, out_w)
        lead = x.shape[:-3]
        planes = x.reshape((-1,) + tuple(x.shape[-3:])) if x.ndim != 4 else x
        out, index = F.max_pool2d(planes, (ph, pw), stride, pad, return_indices=True)
        if x.ndim != 4:
            out, index = (a.reshape(tuple(lead) + tuple(a.shape[1:])) for a in (out, index))
        return out, index

    def max_pool_grad(self, dout, arg, x, ph, pw, stride, pad):
        if arg.dtype != torch.int64:  # the reference's window offsets
            return super().max_pool_grad(dout, arg, x, ph, pw, stride, pad)
        fold = (lambda a: a.reshape((-1,) + tuple(a.shape[-3:]))) if x.ndim != 4 else \
            (lambda a: a)
        dx = torch.ops.aten.max_pool2d_with_indices_backward(
            fold(dout), fold(x), [ph, pw], [stride, stride], [pad, pad], [1, 1], False, fold(arg))
        return dx.reshape(x.shape)

    # --- dropout's generator ------------------------------------------------------------

    def uniform(self, key, counter, shape, first=0):
        if key.device.type not in WRAPPING:
            return super().uniform(key, counter, shape, first)
        n = 1
        for d in shape:
            n *= int(d)
        start = _mix(key.view(torch.int64) ^ _mix(counter.view(torch.int64)))
        z = torch.arange(first, first + n, dtype=torch.int64, device=key.device)
        z = _mix(z * _signed(splitmix.GOLDEN) + start)
        return (_shr(z, 11).to(torch.float64) * 2.0 ** -53).reshape(tuple(shape))

    def keep(self, key, counter, shape, ratio, first=0):
        if key.device.type not in WRAPPING:  # the standard's: decided on the integers (MPS)
            return super().keep(key, counter, shape, ratio, first)
        return self.uniform(key, counter, shape, first) > ratio  # float64 numbers: exact

    def increment(self, counter):
        if counter.device.type not in WRAPPING:
            return super().increment(counter)
        counter.view(torch.int64).add_(1)
        return counter
