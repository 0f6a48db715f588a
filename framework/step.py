"""What a training step is: the protocol every step the Trainer runs implements
(:class:`Step`), the book's step itself (:func:`train_step`) with the two facts it
reads off a network (:func:`step_loss`, :func:`network_dtype`), and the numbers of a
network's that a recorded or compiled step bakes in (:func:`baked_in`).

The steps themselves live apart: the eager and CUDA-graph steps in
:mod:`framework.steps`, the XLA-compiled one in :mod:`framework.jit_step`, the
data-parallel one in :mod:`framework.data_parallel`.
"""

import contextlib


def step_loss(network):
    """The loss of the last ``gradient`` call: ``last_loss`` (weight decay included) where the
    network keeps one (every :class:`models.base.Network`), else its last layer's
    (``last_layer``, or the book's ``lastLayer``)."""
    loss = getattr(network, "last_loss", None)
    if loss is not None:
        return loss
    last = getattr(network, "last_layer", None) or getattr(network, "lastLayer", None)
    if last is None or not hasattr(last, "loss"):
        raise AttributeError(
            f"{type(network).__name__} keeps no loss of its gradient's forward pass, which the "
            f"Trainer reports: set network.last_loss in gradient(), or keep the loss layer as "
            f"last_layer (the book's lastLayer) with its loss in .loss, as SoftmaxWithLoss does")
    return last.loss


def network_dtype(network):
    """The dtype a network computes in: its ``dtype`` (every :class:`models.base.Network`),
    else its parameters' (a network of the user's own)."""
    dtype = getattr(network, "dtype", None)
    return dtype if dtype is not None else next(iter(network.params.values())).dtype


def baked_in(network):
    """The network's numbers that a recorded or compiled step bakes in, as constants of the
    replayed graph or of the XLA program: weight decay's lambda and every layer's
    plain-number and text attributes (a dropout ratio, batch norm's momentum), less what a
    layer's forward keeps for its backward (its ``saved``: batch norm's ``batch_size`` is
    the last batch's, not a setting). A step records or compiles anew when this changes
    (a callback raising weight decay between epochs, say); a training step leaves it as it
    was. Layers are read from ``network.layers`` where it is a dict (every
    :class:`models.base.Network`, the book's networks)."""
    layers = getattr(network, "layers", None)
    items = layers.items() if hasattr(layers, "items") else ()
    return (getattr(network, "weight_decay_lambda", 0),
            tuple((name, _scalars(layer)) for name, layer in items))


def _scalars(obj):
    kept = getattr(obj, "saved", ())  # a layer of the user's own may have no __dict__
    return tuple(sorted((k, v) for k, v in getattr(obj, "__dict__", {}).items()
                        if isinstance(v, (bool, int, float, str)) and not k.startswith("__")
                        and k not in kept))


def train_step(network, optimizer, x_batch, t_batch):
    """Gradient, update, and the loss of the gradient's forward pass (a device scalar)."""
    grads = network.gradient(x_batch, t_batch)
    optimizer.update(network.params, grads)
    return step_loss(network)


class Step:
    """The protocol every step the Trainer runs implements (see the module)."""

    mode = "eager"
    seconds = 0.0  # spent making the step (recording it), beside the epochs' time
    losses = None

    def start_epoch(self, order, first=0):
        """Take the epoch's sample order (device indices, or None: in order) from step
        ``first`` on."""
        raise NotImplementedError

    def run(self, i):
        """Step ``i`` of the epoch: its loss into ``losses[i]``, nothing waited for."""
        raise NotImplementedError

    def is_current(self):
        """Whether the step may still run as made (a recorded graph may not, once an
        optimizer's number changed)."""
        return True

    def evaluation(self):
        """A context around the Trainer's evaluations (``network.accuracy``): nothing by
        default; the compiled step lends the network a compiled count of each batch."""
        return contextlib.nullcontext()

    def sync(self):
        """Put into the network and optimizer what the step holds apart (a compiled step's
        arrays, :class:`framework.jit_step.JitStep`): before anything reads them. Nothing
        for the steps that update them where they are."""
