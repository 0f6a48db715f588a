"""Data-parallel training: the step of a world of several processes, in one place.

Each process of an ``mpiexec`` job holds the same network, optimizer and batches
(:mod:`framework.replicas` checks it). :class:`DataParallelStep` wraps what one process
does on a batch so that the processes together take the step one process takes on the
whole batch, as PyTorch's DDP and Horovod do, the model unchanged:

1. **shard**: this process's rows ``lo:hi`` of the global batch (:meth:`World.shard`:
   parts that differ by at most one row, in rank order);
2. **gradient**: the network's own ``gradient(x, t)`` on those rows, inside
   :func:`framework.sharding.sharded` (the one context the layers may read: dropout
   draws its rows of the global batch's mask);
3. **weight**: every gradient, and the loss, times the shard's share of the batch,
   ``(hi - lo) / n``: the mean over the shard becomes its part of the mean over the
   batch, and the weight decay each process adds is counted once in the sum;
4. **pack** the gradients and the loss into one flat buffer, **all-reduce** it
   (:meth:`framework.distributed.Communicator.all_reduce`: every element the ranks'
   values added in rank order, over MPI or NCCL), and **unpack** it;
5. **update**: the optimizer's, alike on every process.

Batch norm's statistics are the batch's, not the shard's, where the network's batch
norms are :class:`framework.layers.SyncBatchNormalization` (given the communicator once:
:func:`synchronize_batch_norms` makes them so; the Trainer does for
``sync_batchnorm=True``). :func:`exactness_problems` names what a network of the user's
own would compute otherwise.

What is exact: the step's mathematics, the masks, the statistics and the batch order
are the one-process run's. What is not: the rounding of sums over shards, which differs
from the sums over the whole batch as two BLAS builds' do (1e-9 and below in float64;
in float32 runs drift apart as such runs do: README, "On several processes").
"""

import backends
from framework import sharding
from framework.layers import BatchNormalization, Dropout, SyncBatchNormalization
from framework.step import step_loss
from framework.steps import EagerStep


def train_step(network, optimizer, x_batch, t_batch, world, communicator):
    """This process's part of the step on the global batch ``(x_batch, t_batch)``: its
    shard's gradient, weighted, all-reduced with every process's, then the update (the
    module's 1-5). Returns the global batch's loss, a device scalar."""
    n = x_batch.shape[0]
    lo, hi = world.shard(n)
    shard = sharding.Shard(lo, hi, n)
    with sharding.sharded(shard):
        grads = network.gradient(x_batch[lo:hi, ...], t_batch[lo:hi, ...])
    flat, layout = pack(grads, step_loss(network), network.params)
    flat *= shard.share  # the shard's part of the batch's mean (weight decay: once)
    flat = communicator.all_reduce(flat)
    optimizer.update(network.params, unpack(flat, layout))
    return flat[-1]


class DataParallelStep(EagerStep):
    """The data-parallel step as the Trainer runs it (a :class:`framework.steps.Step`):
    each batch of the epoch is the global batch, of which :func:`train_step` takes this
    process's part (``train(x, t)``: that, or a function of the caller's around it, as
    the Trainer's ``train_step``)."""

    def __init__(self, network, optimizer, batches, world, communicator, reason, train=None):
        self.world, self.communicator = world, communicator
        super().__init__(network, optimizer, batches, reason, train=train or (
            lambda x, t: train_step(network, optimizer, x, t, world, communicator)))


def pack(grads, loss, params):
    """``(flat, layout)``: the gradients (in ``params``' order) and the loss in one 1-D
    buffer of the parameters' dtype, and what :func:`unpack` needs to cut it again."""
    first = next(iter(params.values()))
    xp = backends.array_namespace(first)
    keys = list(params)
    parts = [xp.reshape(grads[k], (-1,)) for k in keys]
    parts.append(xp.reshape(xp.astype(loss, first.dtype), (1,)))
    return xp.concat(parts), [(k, tuple(grads[k].shape)) for k in keys]


def unpack(flat, layout):
    """The gradients of a :func:`pack`'d buffer, by name, views of ``flat``."""
    xp = backends.array_namespace(flat)
    grads, start = {}, 0
    for key, shape in layout:
        size = 1
        for d in shape:
            size *= d
        grads[key] = xp.reshape(flat[start:start + size], shape)
        start += size
    return grads


def prepare(network, world, communicator, sync_batchnorm=True):
    """Make ``network`` train in ``world`` what one process trains: its batch norms
    synchronised (``sync_batchnorm``; False keeps each process's own statistics, another
    network's result), and ``ValueError`` naming anything else that would make the run
    another one (:func:`exactness_problems`). Nothing in a world of one."""
    if world.size == 1:
        return
    if sync_batchnorm:
        synchronize_batch_norms(network, communicator)
    problems = exactness_problems(network, sync_batchnorm)
    if problems:
        raise ValueError(f"a data-parallel run of {type(network).__name__} over {world.size} "
                         f"processes would not train what one process trains: "
                         f"{'; '.join(problems)}")


def synchronize_batch_norms(network, communicator):
    """The network's :class:`BatchNormalization` layers made
    :class:`SyncBatchNormalization` over ``communicator`` (the same arrays: ``params`` and
    the state stay the ones in them), in ``network.layers``; returns their names."""
    layers = getattr(network, "layers", None)
    if not hasattr(layers, "items"):
        return []
    done = []
    for name, layer in list(layers.items()):
        if type(layer) is BatchNormalization:
            layers[name] = SyncBatchNormalization.of(layer, communicator)
            done.append(name)
    return done


def layers_of(network):
    """``(name, layer)`` for each layer a network holds: its ``layers`` (a dict, by key, or a
    list), and any attribute with ``forward`` and ``backward`` (a network of the user's
    own), its last layer among them."""
    layers = getattr(network, "layers", None)
    found = list(layers.items()) if hasattr(layers, "items") else \
        [(getattr(layer, "name", None), layer) for layer in layers or []]
    held = [layer for _, layer in found]
    for name, value in vars(network).items():
        if hasattr(value, "forward") and hasattr(value, "backward") and value not in held:
            found.append((name, value))
            held.append(value)
    return found


def exactness_problems(network, sync_batchnorm=True):
    """What keeps a data-parallel run of ``network`` from being the one-process run, by
    layer: a batch norm or a dropout that is not xpnet's (it would normalise by, or draw
    for, each process's shard alone), or xpnet's batch norm left unsynchronised (only
    where ``sync_batchnorm`` asks for it). An empty list where there is none."""
    problems = []
    for name, layer in layers_of(network):
        kind = type(layer).__name__
        label = getattr(layer, "name", None) if isinstance(name, int) or name is None else name
        label = label or kind
        lowered = kind.lower().replace("_", "")
        if "batchnorm" in lowered or "batchnormalization" in lowered:
            if isinstance(layer, SyncBatchNormalization):
                continue
            if isinstance(layer, BatchNormalization):
                if sync_batchnorm:
                    problems.append(f"{label} ({kind}) normalises by its process's shard: "
                                    f"make it a SyncBatchNormalization")
                continue
            problems.append(f"{label} ({kind}) is a batch norm of the network's own, which "
                            f"would normalise by each process's shard: use "
                            f"framework.layers.SyncBatchNormalization")
        elif "dropout" in lowered and not isinstance(layer, Dropout):
            problems.append(f"{label} ({kind}) is a dropout of the network's own, which would "
                            f"draw each process's mask alone: use framework.layers.Dropout, "
                            f"which draws its rows of the whole batch's mask")
    return problems
