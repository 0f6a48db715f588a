"""Data-parallel ranks as replicas of one run: what they must share before the first
step, checked, and rank 0's start given to all.

Every rank takes its shard of the same batches and applies the same summed gradient,
so the ranks must hold the same network, optimizer and data, and start from the same
parameters. :func:`prepare` checks the first three (a rank that differs is named,
before MPI would fail on mismatched messages or, worse, train a silently wrong run)
and then broadcasts rank 0's parameters and layer state, as DDP and Horovod do: a
network built without a seed draws its own weights on each rank.
"""

ROWS = 64  # compared of each data array, spread over it


def prepare(world, communicator, network, optimizer, data):
    """Check that every rank built the same ``network`` and ``optimizer`` and holds the
    same ``data`` (name -> array), then copy rank 0's parameters and layer state into
    every rank's. Collective: every rank calls it, in the same order."""
    same_everywhere(world, "networks", describe(network))
    same_everywhere(world, "optimizers", repr(optimizer))
    differ = [name for name, a in data.items()
              if not communicator.same(a[::max(1, a.shape[0] // ROWS), ...])]
    if differ:
        raise ValueError(f"Trainer: the {world.size} processes were given different "
                         f"{', '.join(differ)}: every process of a data-parallel run needs "
                         f"the same data (the same files on every machine)")
    state = network.state() if hasattr(network, "state") else {}
    got = communicator.broadcast_arrays({**{f"param/{k}": v for k, v in network.params.items()},
                                         **{f"state/{k}": v for k, v in state.items()}})
    for key, value in list(network.params.items()):  # JAX: the new arrays put in their places
        if got[f"param/{key}"] is not value:
            network.params[key] = got[f"param/{key}"]
    if any(got[f"state/{k}"] is not v for k, v in state.items()):
        network.load_state({k: got[f"state/{k}"] for k in state})


def differences(communicator, network):
    """Names of the parameters and layer-state arrays (dropout's generators, batch norm's
    running averages) whose bytes differ between the processes: empty where every process
    holds the same network. Collective."""
    state = network.state() if hasattr(network, "state") else {}
    arrays = {**network.params, **{f"state {k}": v for k, v in state.items()}}
    return [name for name, a in arrays.items() if not communicator.same(a)]


def describe(network):
    """``TwoLayerNet(input_size=784, hidden_size=50, output_size=10)``, or the class and
    its parameters' shapes for a network without ``config()``."""
    if hasattr(network, "config"):
        arguments = ", ".join(f"{k}={v!r}" for k, v in network.config().items())
        return f"{type(network).__name__}({arguments})"
    shapes = ", ".join(f"{k} {tuple(p.shape)}" for k, p in network.params.items())
    return f"{type(network).__name__} with parameters {shapes}"


def same_everywhere(world, what, mine):
    """``mine`` (this rank's description of its ``what``) must be every rank's; else a
    ValueError naming rank 0's and the first that differs."""
    everyone = world.communicator.everyone(mine)
    other = next((r for r, theirs in enumerate(everyone) if theirs != everyone[0]), None)
    if other is not None:
        raise ValueError(f"Trainer: the processes built different {what}: rank 0 "
                         f"{everyone[0]}, rank {other} {everyone[other]}; every process of a "
                         f"data-parallel run needs the same")
