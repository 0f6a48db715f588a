"""The layer-stack walk every model shares: predict, loss, gradient, numerical gradient, checkpoints.

A model only builds its layers. It sets, in its constructor:

``params``
    name -> array, the book's ``W1, b1, ...`` (and ``gamma1, beta1, ...``);
``layers``
    an ``OrderedDict`` of layers in forward order;
``last_layer``
    the loss layer (``SoftmaxWithLoss``);
``param_layout``
    parameter name -> ``(layer name, attribute)``, e.g. ``"W1": ("Affine1", "W")``;
    backward leaves the gradient in the layer's ``"d" + attribute``;
``dtype``, ``weight_decay_lambda`` (0 for none), and ``config()``.

The book writes this walk into every network; here it is written once.
"""

from backends import get_array_module
from framework import checkpoint
from framework import gradient as _gradient


def float_dtype(owner, xp, dtype):
    """``dtype`` (default float32) as ``xp``'s dtype, or ``ValueError`` naming ``owner``."""
    out = xp.dtype(dtype or "float32")
    if out.kind != "f":
        raise ValueError(f"{owner}: dtype must be a floating type, got {out}")
    return out


class Network:
    """Base of the models: the book's network methods for any stack of layers.

    Weight decay follows the book: ``loss`` adds ``0.5 * lambda * sum(W**2)``
    for every weight matrix (parameters stored as a layer's ``W``), and
    ``gradient`` adds ``lambda * W`` to their gradients. Layers with
    ``takes_train_flg`` (batch norm, dropout, convolution) get ``train_flg``: ``predict``
    and ``loss`` default to inference, ``gradient`` runs in training mode,
    as in the book. The layers' ``buffers`` (running averages, generator
    positions) are the network's :meth:`state`, saved with the parameters.
    """

    weight_decay_lambda = 0
    accuracy_batch_size = 10000
    #: elements of the largest stacked activation in :meth:`numerical_gradient`
    STACK_BUDGET = 2**22

    def config(self):
        raise NotImplementedError

    @property
    def lastLayer(self):  # noqa: N802 - the book's spelling
        return self.last_layer

    # --- the walk --------------------------------------------------------------------

    def _forward(self, x, train_flg):
        for layer in self.layers.values():
            if getattr(layer, "takes_train_flg", False):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def predict(self, x, train_flg=False):
        """Scores (before softmax) for a batch ``x`` of shape ``(N, ...)``."""
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)  # per batch: never a float64 copy of a whole dataset
        return self._forward(x, train_flg)

    def _decayed(self):
        """Names of the parameters weight decay applies to: the weight matrices."""
        return [key for key, (_, attr) in self.param_layout.items() if attr == "W"]

    def weight_decay(self):
        """0.5 * lambda * sum of W**2 over every weight matrix (0 without decay)."""
        lam = self.weight_decay_lambda
        if not lam:
            return 0
        total = 0
        for key in self._decayed():
            W = self.params[key]
            total = total + (W * W).sum()
        return 0.5 * lam * total

    def loss(self, x, t, train_flg=False):
        """Mean cross-entropy loss (plus weight decay), an array scalar on the network's backend.

        Also kept as ``last_loss``: the Trainer reads the loss of ``gradient``'s
        forward pass from there without computing it again.
        """
        loss = self.last_layer.forward(self.predict(x, train_flg), t)
        if self.weight_decay_lambda:
            # in the loss's dtype whatever the promotion rules: a graph step records float32
            loss = loss + self.weight_decay().astype(loss.dtype)
        self.last_loss = loss
        return loss

    def accuracy(self, x, t, batch_size=None):
        """Fraction of ``x`` classified as ``t`` (labels or one-hot), in inference mode, as a float.

        Evaluates ``batch_size`` samples at a time (default
        ``accuracy_batch_size``: 10,000, or 500 and 200 for SimpleConvNet and
        DeepConvNet, whose im2col columns are large) and counts on the backend, so memory
        stays bounded and the value is read once at the end.
        """
        batch_size = batch_size or self.accuracy_batch_size
        xp = get_array_module(next(iter(self.params.values())))
        n = x.shape[0]
        if n == 0:
            raise ValueError(f"{type(self).__name__}.accuracy: empty batch")
        correct = 0
        for i in range(0, n, batch_size):
            tb = t[i:i + batch_size]
            if tb.ndim != 1:
                tb = tb.argmax(axis=1)
            y = self.predict(x[i:i + batch_size]).argmax(axis=1)
            correct = correct + xp.count_nonzero(y == tb)
        return float(correct) / n

    def gradient(self, x, t):
        """Gradients of the training-mode loss by backpropagation: forward, then every
        backward in reverse; weight decay's lambda * W added to the weights'."""
        self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
            if dout is None:  # a first layer that skips its input gradient
                break
        lam = self.weight_decay_lambda
        grads = {}
        for key, (name, attr) in self.param_layout.items():
            g = getattr(self.layers[name], "d" + attr)
            if lam and attr == "W":
                g = g + lam * self.params[key]
            grads[key] = g
        return grads

    # --- numerical gradients ---------------------------------------------------------------

    def numerical_gradient(self, x, t, h=1e-4):
        """Gradients of the training-mode loss by central differences, for checking ``gradient``.

        The book perturbs one weight at a time and runs the whole network
        twice per weight. Here the layer holding a parameter computes its
        output for thousands of single-element perturbations at once
        (``perturbed_outputs``; by a loop over the elements for a layer
        without one) and the layers after it run on that stack
        (``forward_stack``), so the whole check takes a few dozen vectorised
        passes. Batch norm uses each perturbed copy's own batch statistics;
        dropout uses its current mask (see ``Dropout.current_mask``).
        Nothing is changed: no running average moves, no generator advances.
        Equal to :meth:`numerical_gradient_elementwise` to about 1e-12 in float64.
        """
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        names = list(self.layers)
        inputs, sizes = {}, []
        s = x[None]
        for name in names:  # the unperturbed pass, as a stack of one: each layer's input
            inputs[name] = s[0]
            s = self._stack_forward(self.layers[name], s)
            sizes.append(s[0].size)
        decay = self.weight_decay()
        decayed = set(self._decayed()) if self.weight_decay_lambda else set()
        grads = {}
        for key, (name, attr) in self.param_layout.items():
            layer = self.layers[name]
            after = [self.layers[n] for n in names[names.index(name) + 1:]]
            p = self.params[key]

            def losses(index, delta, layer=layer, after=after, name=name, attr=attr, key=key,
                       p=p):
                s = self._perturbed_outputs(layer, inputs[name], attr, index, delta)
                for later in after:
                    s = self._stack_forward(later, s)
                out = self.last_layer.forward_stack(s, t) + decay
                if key in decayed:  # 0.5 lam ((w + d)^2 - w^2) = lam w d + 0.5 lam d^2
                    lam = self.weight_decay_lambda
                    out = out + lam * p.reshape(-1)[index] * delta + 0.5 * lam * delta * delta
                return out

            # as many copies at once as keep the largest stacked activation near
            # STACK_BUDGET elements (a convolution's output is large per copy)
            largest = max(sizes[names.index(name):])
            chunk = max(1, min(4096, self.STACK_BUDGET // max(largest, 1)))
            grads[key] = _gradient.numerical_gradient_stacked(losses, p, h, chunk=chunk)
        return grads

    @staticmethod
    def _stack_forward(layer, s):
        if getattr(layer, "takes_train_flg", False):
            return layer.forward_stack(s, True)
        return layer.forward_stack(s)

    @staticmethod
    def _perturbed_outputs(layer, x, attr, index, delta):
        if hasattr(layer, "perturbed_outputs"):
            if getattr(layer, "takes_train_flg", False):
                return layer.perturbed_outputs(x, attr, index, delta, True)
            return layer.perturbed_outputs(x, attr, index, delta)
        # A layer without a stacked form: perturb each element in turn (reads the
        # indices on the host; the numerical gradient is a check, not a hot loop).
        xp = get_array_module(x)
        flat = getattr(layer, attr).reshape(-1)
        outs = []
        for i in index.tolist():
            orig = flat[i].copy()
            flat[i] = orig + delta
            outs.append(Network._stack_forward(layer, x[None])[0])
            flat[i] = orig
        return xp.stack(outs)

    def numerical_gradient_elementwise(self, x, t, h=1e-4):
        """The book's definition: two full training-mode forward passes per parameter element
        (slow; the reference). Dropout holds its current mask and the state is restored."""
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        dropouts = [layer for layer in self.layers.values() if hasattr(layer, "hold_mask")]
        shapes, s = {}, x[None]
        for name, layer in self.layers.items():  # the input shape each dropout sees
            shapes[name] = s.shape[1:]
            s = self._stack_forward(layer, s)
        for name, layer in self.layers.items():
            if layer in dropouts:
                layer.current_mask(shapes[name])
        saved = {k: v.copy() for k, v in self.state().items()}

        def loss_w(_):
            value = self.loss(x, t, train_flg=True)
            self.load_state(saved)  # running averages back where they were
            return value
        try:
            for layer in dropouts:
                layer.hold_mask = True
            return {key: _gradient.numerical_gradient(loss_w, self.params[key], h)
                    for key in self.params}
        finally:
            for layer in dropouts:
                layer.hold_mask = False

    # --- state and checkpoints ----------------------------------------------------------------

    def state(self):
        """The layers' buffers, ``"<layer>/<name>" -> array`` (the arrays themselves)."""
        return {f"{name}/{attr}": getattr(layer, attr)
                for name, layer in self.layers.items()
                for attr in getattr(layer, "buffers", ())}

    def load_state(self, values):
        """Copy ``values`` (host or device arrays, by :meth:`state`'s names) into the buffers, in place."""
        for key, buf in self.state().items():
            buf[...] = get_array_module(buf).asarray(values[key]).astype(buf.dtype)

    def save_params(self, path):
        """Write the parameters, state, architecture and dtype to ``path`` (an ``.npz``), atomically."""
        checkpoint.save(path, self)

    def load_params(self, path):
        """Copy parameters (and state) from ``path`` into this network's arrays, on its own backend.

        Raises ``framework.checkpoint.CheckpointError`` and changes nothing
        if the file is damaged or holds another architecture.
        """
        checkpoint.load(path, self)
