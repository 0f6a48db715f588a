"""The layer-stack walk every model shares, and the one way a model builds its stack.

A model describes its layers in its constructor, in forward order::

    self.begin(dtype, seed)
    self.add("Affine", Affine, W=self.weights(784, 50, std=0.01), b=self.zeros(50))
    self.add("Relu", Relu)
    ...
    self.finish(SoftmaxWithLoss())

:meth:`Network.add` names the layer as the book does (the n-th ``Relu`` is
``Relu<n>``) and its parameters too (``W`` of the third layer holding a
``W`` is ``W3``), filling ``params``, ``layers`` and ``param_layout``
(parameter name -> ``(layer name, attribute)``; backward leaves the
gradient in the layer's ``"d" + attribute``) together. Weights are drawn
in the order the layers are added, from the seeded host generator, so a
seed gives the same network on every backend. The model also sets
``weight_decay_lambda`` (0 for none) where it has one, and ``config()``.

The book writes the walk below (predict, loss, gradient, numerical
gradient) into every network; here it is written once.
"""

import functools
import math
import numbers
import threading
import weakref

import backends
from backends import check_same_backend, copy, get_array_module, ops_for, size
from backends.arrays import check_arrays
from backends.dispatch import CallScope
from framework import checkpoint
from framework import gradient as _gradient
from framework.data import label_column
from framework.functions import one_hot_classes
from framework.layers.adopted import adopt
from framework.layers.base import Layer, training
from models.checks import float_dtype
from models.layers import Layers
from models.parameters import Parameters

_MAKING_SCOPES = threading.Lock()  # a network's CallScope is made once, whichever thread asks


def _refuse_foreign_inputs(network, what, **arrays):
    """``TypeError`` naming the first of ``arrays`` that is not an array (a list of numbers,
    say), or arrays of another backend than the network's, with what to do; nothing where
    each is one of the network's. The methods look only where a call
    failed (or once per call, not per step): the book passes arrays, and a step checks
    nothing again."""
    check_arrays(f"{type(network).__name__}.{what}", whose="the network's", **arrays)
    params = getattr(network, "params", None)
    if params:  # NumPy batches for a network on PyTorch, say: named, not the library's words
        try:
            check_same_backend(f"{type(network).__name__}.{what}", **arrays,
                               params=next(iter(params.values())))
        except TypeError as e:
            raise e from None


def _nothing(*arrays):
    """A layer's checks where it has none."""


def _raise_if_too_large(network, what, x, error):
    """Where ``error`` says the device ran out of memory (each library in its own words:
    :func:`backends.out_of_memory`), a ``MemoryError`` naming the network, the call and
    its batch, with what to do, raised from it ("Unable to allocate 32.2 GiB for an array
    with shape (30, 500000, 24, 24)" names neither); else nothing, for the caller to raise
    ``error`` as it came. Looked at only where a call failed."""
    if not backends.out_of_memory(error, next(iter(network.params.values()))):
        return
    n = x.shape[0] if getattr(x, "ndim", 0) else "?"
    if what == "gradient":
        fix = "train on smaller batches (the Trainer's mini_batch_size)"
    elif what == "accuracy":
        fix = f"give a smaller batch_size (the default is {network.accuracy_batch_size})"
    else:
        fix = (f"pass it in parts (accuracy does: batch_size, {network.accuracy_batch_size} "
               f"samples at a time by default)")
    raise MemoryError(f"{type(network).__name__}.{what}: a batch of {n} samples needs more "
                      f"memory than this device has ({error}); {fix}") from error


def _explain_input_shape(network, what, x, error):
    """``ValueError`` saying that ``x``'s samples are not the shape the network was built
    for (a ConvNet's ``input_dim``), raised from a layer's ``error``; nothing where they are
    or the network has no ``input_dim``. Looked at only where a call failed."""
    dims = getattr(network, "input_dim", None)
    shape = tuple(getattr(x, "shape", ()))[1:]
    if dims is None or not shape or shape == tuple(dims):
        return
    hint = ""
    if tuple(x.shape) == tuple(dims):
        hint = "; x is one sample: use x[None] for a batch of one"
    elif len(shape) == 1 and shape[0] == math.prod(dims):
        hint = (f"; these are flattened images: reshape x to (N, {', '.join(map(str, dims))}), "
                f"or load them with flatten=False")
    raise ValueError(f"{type(network).__name__}.{what}: x holds samples of shape {shape}, but "
                     f"this network was built for input_dim={tuple(dims)}{hint}") from error


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
    #: constructor arguments that only draw the first weights: a checkpoint's parameters
    #: replace those, so loading one ignores them (a net built with 'relu' loads one of 'he')
    init_only = ("weight_init_std",)
    #: elements of the largest stacked activation in :meth:`numerical_gradient`
    STACK_BUDGET = 2**22

    def config(self):
        raise NotImplementedError

    # --- building the stack -----------------------------------------------------------

    def begin(self, dtype=None, seed=None):
        """An empty stack of ``dtype`` (default float32) on the current backend; ``seed``
        seeds the weights and, from a stream of its own, dropout's generators (so a
        seed's weights are the same with and without dropout)."""
        self._backend = backends.current()
        self.dtype = float_dtype(type(self).__name__, self._backend, dtype)
        self.layers, self.param_layout = Layers(self), {}
        self.params = Parameters(self.layers, self.param_layout)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):  # a generator's message named [seed, 1]
            raise ValueError(f"{type(self).__name__}: seed={seed!r}: expected None or a "
                             f"non-negative integer")
        self._rng = backends.host_rng(seed)
        self._keys = backends.host_rng(None if seed is None else [seed, 1])
        self._counts = {}

    def weights(self, *shape, std):
        """``std * N(0, 1)`` of ``shape``, drawn on the host and sent to the backend."""
        return self._backend.asarray(std * self._rng.standard_normal(shape), self.dtype)

    def zeros(self, n):
        return self._backend.full(n, 0, self.dtype)

    def ones(self, n):
        return self._backend.full(n, 1, self.dtype)

    def dropout_seed(self):
        """The next dropout generator's seed, from the dropout stream."""
        return int(self._keys.integers(2**63))

    def _count(self, kind):
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return self._counts[kind]

    def add(self, kind, make, **params):
        """Append ``make(*params.values(), name=<kind><n>)``, the n-th layer of its kind, with
        each of ``params`` (attribute -> array) registered under the book's name; returns it."""
        name = f"{kind}{self._count(kind)}"
        for attr, array in params.items():
            key = f"{attr}{self._count(('param', attr))}"
            self.params[key] = array
            self.param_layout[key] = (name, attr)
        layer = self.layers[name] = make(*params.values(), name=name)
        return layer

    def finish(self, last_layer):
        """Close the stack with its loss layer. The first layer's input is data: it skips its
        input gradient (the book computes that product and throws it away)."""
        first = next(iter(self.layers.values()))
        if hasattr(first, "input_grad"):
            first.input_grad = False
        self.lastLayer = last_layer  # (adopted where it is the user's own)
        self.params.fixed = True  # its names, shapes and dtypes from here on
        del self._backend, self._rng, self._keys, self._counts

    def reorder(self, keys):
        """``params`` and ``param_layout`` in the order ``keys`` (the book's, where it
        differs from the order the layers were added in)."""
        self.param_layout = {k: self.param_layout[k] for k in keys}
        params = Parameters(self.layers, self.param_layout, self.params.fixed)
        dict.update(params, ((k, self.params[k]) for k in keys))
        self.params = params

    def __getstate__(self):
        # a copy or a pickle leaves out this process's resolved operations (they hold the
        # library's module): the copy resolves its own on its first call
        state = dict(vars(self))
        state.pop("_call", None)
        return state

    def __setstate__(self, state):
        vars(self).update(state)
        layers = vars(self).get("layers")
        if isinstance(layers, Layers):  # its weak link back to this network
            layers.network = weakref.ref(self)

    @functools.cached_property
    def _call(self):
        """The context of one call of this network (a gradient, a prediction, an evaluation):
        the backend's operations resolved once for the whole call, as the backend wants
        it marked (on the host: BLAS's threads lent to xpnet's own inside it and given
        back after), one thread's call at a time. A :class:`backends.dispatch.CallScope`,
        made on first use and kept (made once: two threads' first calls share it)."""
        with _MAKING_SCOPES:
            made = vars(self).get("_call")
            if made is None:
                made = vars(self)["_call"] = CallScope(self)
            return made

    @property
    def lastLayer(self):  # noqa: N802 - the book's spelling
        return self.last_layer

    @lastLayer.setter
    def lastLayer(self, layer):  # noqa: N802
        """The loss layer, by the book's name or ours (``network.last_layer = ...`` is taken
        in where it is next needed: :meth:`_loss_layer`)."""
        self.last_layer = adopt(layer, "last_layer", f"{type(self).__name__}.last_layer",
                                loss=True)

    def _loss_layer(self):
        """``last_layer``, taken in as a layer where one of the user's own was set since
        (outside the step: its forward and backward are all a step calls)."""
        if not isinstance(self.last_layer, Layer):
            self.lastLayer = self.last_layer
        return self.last_layer

    # --- the walk --------------------------------------------------------------------

    def predict(self, x, train_flg=False):
        """Scores (before softmax) for a batch ``x`` of shape ``(N, ...)``."""
        if not self._call.local.depth:  # a call from outside: resolved once, for the whole call
            if train_flg is not True and train_flg is not False:  # no call for a bool
                train_flg = training(f"{type(self).__name__}.predict", train_flg)
            try:
                check_same_backend(f"{type(self).__name__}.predict", x=x,
                                   params=next(iter(self.params.values())))
                with self._call:  # the body below, not an override's
                    return Network.predict(self, x, train_flg)
            except (AttributeError, TypeError):
                _refuse_foreign_inputs(self, "predict", x=x)
                raise
            except ValueError as e:  # a layer's words, with the network's where it knows
                _explain_input_shape(self, "predict", x, e)
                raise
            except (MemoryError, RuntimeError) as e:  # each library's words for it
                _raise_if_too_large(self, "predict", x, e)
                raise
        if x.dtype != self.dtype:  # per batch: never a float64 copy of a whole dataset
            x = get_array_module(x).astype(x, self.dtype)
        for layer in self.layers.values():
            x = layer.forward(x, train_flg) if layer.takes_train_flg else layer.forward(x)
        return x

    def _decayed(self):
        """Names of the parameters weight decay applies to: the weight matrices."""
        return [key for key, (_, attr) in self.param_layout.items() if attr == "W"]

    def weight_decay(self):
        """0.5 * lambda * sum of W**2 over every weight matrix (0 without decay)."""
        lam = self.weight_decay_lambda
        if not lam:
            return 0
        weights = [self.params[key] for key in self._decayed()]
        return ops_for(next(iter(self.params.values()))).weight_decay(weights, lam)

    def loss(self, x, t, train_flg=False):
        """Mean cross-entropy loss (plus weight decay), an array scalar on the network's backend.

        Also kept as ``last_loss``: the Trainer reads the loss of ``gradient``'s
        forward pass from there without computing it again.
        """
        if not self._call.local.depth:
            if train_flg is not True and train_flg is not False:  # no call for a bool
                train_flg = training(f"{type(self).__name__}.loss", train_flg)
            try:
                with self._call:
                    return Network.loss(self, x, t, train_flg)
            except (AttributeError, TypeError):
                _refuse_foreign_inputs(self, "loss", x=x, t=t)
                raise
            except ValueError as e:  # a layer's words, with the network's where it knows
                _explain_input_shape(self, "loss", x, e)
                raise
            except (MemoryError, RuntimeError) as e:  # each library's words for it
                _raise_if_too_large(self, "loss", x, e)
                raise
        loss = self.last_layer.forward(self.predict(x, train_flg), t)
        if self.weight_decay_lambda:
            # in the loss's dtype whatever the promotion rules: a graph step records float32
            loss = loss + get_array_module(loss).astype(self.weight_decay(), loss.dtype)
        self.last_loss = loss
        return loss

    def accuracy(self, x, t, batch_size=None):
        """Fraction of ``x`` classified as ``t`` (labels or one-hot), in inference mode, as a float.

        Evaluates ``batch_size`` samples at a time (default
        ``accuracy_batch_size``: 10,000, or 500 and 200 for SimpleConvNet and
        DeepConvNet, whose im2col columns are large) and counts on the backend, so memory
        stays bounded and the value is read once at the end.
        """
        if batch_size is None:
            batch_size = self.accuracy_batch_size
        elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise ValueError(f"{type(self).__name__}.accuracy: batch_size must be a positive "
                             f"integer (or None: {self.accuracy_batch_size}), got "
                             f"{batch_size!r}")
        _refuse_foreign_inputs(self, "accuracy", x=x, t=t)  # once a call, not a batch
        if x.ndim == 0:
            raise ValueError(f"{type(self).__name__}.accuracy: expected a batch x of shape "
                             f"(N, ...), got a 0-d array")
        n = x.shape[0]
        if n == 0:
            raise ValueError(f"{type(self).__name__}.accuracy: empty batch")
        if t.ndim not in (1, 2) or t.shape[0] != n:  # a label short, or one that broadcasts
            single = "; for one sample and its label, pass x[None] and t[None]" \
                if t.ndim == 0 else ""
            raise ValueError(f"{type(self).__name__}.accuracy: x has {n} samples but t has "
                             f"shape {tuple(t.shape)}; expected labels ({n},) or one-hot "
                             f"rows ({n}, classes){single}")
        correct = 0
        try:
            with self._call:
                for i in range(0, n, batch_size):
                    stop = min(i + batch_size, n)  # the standard has no slice past an axis
                    correct = correct + self.count_correct(x[i:stop, ...], t[i:stop, ...])
            correct = float(correct)  # the read: where JAX's asynchronous failures surface
        except ValueError as e:
            _explain_input_shape(self, "accuracy", x, e)
            raise
        except (MemoryError, RuntimeError) as e:  # each library's words for it
            _raise_if_too_large(self, "accuracy", x[:batch_size, ...], e)
            raise
        return correct / n

    def count_correct(self, x, t):
        """How many of the batch ``x`` are classified as ``t`` (labels or one-hot), in
        inference mode: a 0-d integer array on the backend, nothing read. :meth:`accuracy`
        adds these up batch by batch; a compiled step's evaluation traces this
        (:meth:`framework.jit_step.JitStep.evaluation`)."""
        xp = get_array_module(next(iter(self.params.values())))
        scores = self.predict(x)
        if t.ndim != 1:
            if label_column(t, scores.shape[-1]):  # (the book's argmax of it: 0 for all)
                t = xp.reshape(t, (-1,))
            elif t.shape != scores.shape:  # another width's one-hot rows: argmax says nothing
                raise ValueError(f"{type(self).__name__}: t's one-hot rows have "
                                 f"{t.shape[-1]} classes, but the network scores "
                                 f"{scores.shape[-1]}")
            else:
                t = one_hot_classes(xp, t)
        y = xp.argmax(scores, axis=1)
        return xp.count_nonzero(y == xp.astype(t, y.dtype))

    def gradient(self, x, t):
        """Gradients of the training-mode loss by backpropagation: forward, then every
        backward in reverse; weight decay's lambda * W added to the weights'."""
        if not self._call.local.depth:
            try:
                with self._call:
                    return Network.gradient(self, x, t)
            except (AttributeError, TypeError):  # the cost of a look only where one failed
                _refuse_foreign_inputs(self, "gradient", x=x, t=t)
                raise
            except ValueError as e:  # a layer's words, with the network's where it knows
                _explain_input_shape(self, "gradient", x, e)
                raise
            except (MemoryError, RuntimeError) as e:  # each library's words for it
                _raise_if_too_large(self, "gradient", x, e)
                raise
        self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
            if dout is None:  # a first layer that skips its input gradient
                break
        grads = {}
        for key, layer, name in self._gradient_sources:
            grads[key] = getattr(layer, name)
        lam = self.weight_decay_lambda
        if lam:
            keys = self._decayed()
            grads.update(zip(keys, self._call.ops.weight_decay_grads(
                [grads[key] for key in keys], [self.params[key] for key in keys], lam)))
        return grads

    @functools.cached_property
    def _gradient_sources(self):
        """``[(param, layer, "dW")]``: where backward leaves each gradient, worked out on
        first use and kept until a layer is put in or taken out (:meth:`layers_changed`)."""
        return [(key, self.layers[name], "d" + attr)
                for key, (name, attr) in self.param_layout.items()]

    def layers_changed(self):
        """A layer was put in ``layers`` or taken out (a reader's swap, the data-parallel
        step's synchronised batch norms): the gradients are read from the layers there now."""
        vars(self).pop("_gradient_sources", None)

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
        _gradient.check_step(f"{type(self).__name__}.numerical_gradient", "h", h)
        _refuse_foreign_inputs(self, "numerical_gradient", x=x, t=t)
        try:
            with self._call:
                grads = self._numerical_gradient(x, t, h)
        except ValueError as e:  # a layer's words, with the network's where it knows
            _explain_input_shape(self, "numerical_gradient", x, e)
            raise
        _gradient.warn_low_precision(f"{type(self).__name__}.numerical_gradient", self.dtype)
        return grads

    def _numerical_gradient(self, x, t, h):
        if x.dtype != self.dtype:
            x = get_array_module(x).astype(x, self.dtype)
        names = list(self.layers)
        inputs, sizes = {}, []
        s = x[None, ...]
        for name in names:  # the unperturbed pass, as a stack of one: each layer's input
            inputs[name] = s[0, ...]
            layer = self.layers[name]
            getattr(layer, "_check", _nothing)(inputs[name])  # what forward checks, as it would
            s = layer.forward_stack(s, True)
            sizes.append(size(s[0, ...]))
        # the loss's checks and the labels' range: forward_stack would take any labels
        last = self._loss_layer()
        getattr(last, "check_inputs", _nothing)(s[0, ...], t)
        decay = self.weight_decay()
        decayed = set(self._decayed()) if self.weight_decay_lambda else set()
        grads = {}
        for key, (name, attr) in self.param_layout.items():
            layer = self.layers[name]
            after = [self.layers[n] for n in names[names.index(name) + 1:]]
            p = self.params[key]

            def losses(index, delta, layer=layer, after=after, name=name, attr=attr, key=key,
                       p=p):
                s = layer.perturbed_outputs(inputs[name], attr, index, delta, True)
                for later in after:
                    s = later.forward_stack(s, True)
                out = last.forward_stack(s, t) + decay
                if key in decayed:  # 0.5 lam ((w + d)^2 - w^2) = lam w d + 0.5 lam d^2
                    lam = self.weight_decay_lambda
                    xp = get_array_module(p)
                    moved = xp.take(xp.reshape(p, (-1,)), index)
                    out = out + lam * moved * delta + 0.5 * lam * delta * delta
                return out

            # as many copies at once as keep the largest stacked activation near
            # STACK_BUDGET elements (a convolution's output is large per copy)
            largest = max(sizes[names.index(name):])
            chunk = max(1, min(4096, self.STACK_BUDGET // max(largest, 1)))
            grads[key] = _gradient.numerical_gradient_stacked(losses, p, h, chunk=chunk)
        return grads

    def numerical_gradient_elementwise(self, x, t, h=1e-4):
        """The book's definition: two full training-mode forward passes per parameter element
        (slow; the reference). Dropout holds its current mask and the state is restored."""
        _gradient.check_step(f"{type(self).__name__}.numerical_gradient_elementwise", "h", h)
        _refuse_foreign_inputs(self, "numerical_gradient_elementwise", x=x, t=t)
        if x.dtype != self.dtype:
            x = get_array_module(x).astype(x, self.dtype)
        dropouts = [layer for layer in self.layers.values() if hasattr(layer, "hold_mask")]
        shapes, s = {}, x[None, ...]
        for name, layer in self.layers.items():  # the input shape each dropout sees
            shapes[name] = s.shape[1:]
            s = layer.forward_stack(s, True)
        for name, layer in self.layers.items():
            if layer in dropouts:
                layer.current_mask(shapes[name])
        saved = {k: copy(v) for k, v in self.state().items()}

        def loss_w(_):
            value = self.loss(x, t, train_flg=True)
            self.load_state(saved)  # running averages back where they were
            return value
        try:
            for layer in dropouts:
                layer.hold_mask = True
            with self._call:
                grads = {key: _gradient._numerical_gradient(
                    loss_w, self.params[key], h,
                    lambda a, key=key: self.params.__setitem__(key, a))
                    for key in list(self.params)}
        finally:
            for layer in dropouts:
                layer.hold_mask = False
        _gradient.warn_low_precision(f"{type(self).__name__}.numerical_gradient_elementwise",
                                     self.dtype)
        return grads

    def free_saved(self):
        """Drop what the layers kept from the last forward and backward passes (inputs,
        im2col columns, masks, gradients): where no backward follows, as after an
        evaluation or the Trainer's trial of eager steps, their arrays can then go.
        Parameters and state stay; the next training step keeps them anew."""
        for layer in self.layers.values():
            layer.free_saved()
        self._loss_layer().free_saved()

    # --- state and checkpoints ----------------------------------------------------------------

    def state(self):
        """The layers' buffers, ``"<layer>/<name>" -> array`` (the arrays themselves)."""
        return {f"{name}/{attr}": getattr(layer, attr)
                for name, layer in self.layers.items()
                for attr in layer.buffers}

    def host_state(self):
        """:meth:`state` as a checkpoint writes it: host arrays, each in the form every
        backend reads (a dropout generator's uint64 where the device held 32-bit words)."""
        return {f"{name}/{attr}": layer.host_buffer(attr)
                for name, layer in self.layers.items()
                for attr in layer.buffers}

    def load_state(self, values):
        """Copy ``values`` (host or device arrays, by :meth:`state`'s names, as
        :meth:`state` or :meth:`host_state` gave them) into the buffers, in place (on JAX,
        whose arrays are immutable: new arrays in the layers)."""
        for name, layer in self.layers.items():
            for attr in layer.buffers:
                layer.load_buffer(attr, values[f"{name}/{attr}"])

    def save_params(self, path="params.pkl"):
        """Write the parameters, state, architecture and dtype to ``path``, atomically.

        The file is an ``.npz`` archive whatever its name: ``path`` defaults to the book's
        ``params.pkl``, but xpnet writes no pickles (the book's code cannot read it back;
        :meth:`load_params` can).
        """
        checkpoint.save(path, self)

    def load_params(self, path="params.pkl"):
        """Copy parameters (and state) from ``path`` into this network's arrays, on its own backend.

        ``path`` is a checkpoint ``save_params`` wrote, or one of the book's own parameter
        files (``params.pkl``, ``deep_convnet_params.pkl``: a pickled dict of arrays, read
        without running any code the file might hold; the parameters only, cast to the
        network's dtype). Raises ``framework.checkpoint.CheckpointError`` and changes
        nothing if the file is damaged or holds another architecture.
        """
        checkpoint.load_params(path, self)
