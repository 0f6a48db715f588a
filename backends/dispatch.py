"""Which operations compute on an array: decided once, not per operation.

:func:`ops_for` answers for one array: the :class:`backends.ops.Ops` its library has
under the settings in force (the registry's answer, from a dict keyed by the array's
type after the first time). Callers resolve it once and keep it: a layer for each kind
of input it sees (its library, dtype, shape and device, checked once too), a network
for each call (:class:`CallScope`), an optimizer for each update. The registry's
``generation`` counts changes of the settings, so whoever kept an answer asks again
after one.
"""

import threading

from backends.registry import REGISTRY

#: ``ops_for(x)``: the operations for the library ``x`` lives in (see the module)
ops_for = REGISTRY.ops_for


class CallScope:
    """``with scope:`` around one call of ``owner`` (a network: its arrays are its
    ``params``' values): the operations for them, resolved once (again only when the
    settings change), with their :meth:`~backends.ops.Ops.scope` open for the call. One
    object per owner, entered for each call; entering it again inside a call (a
    gradient's loss, the loss's prediction) only counts the depth.

    One thread's call at a time: a network's layers keep what each call's backward needs
    (an Affine layer its input), so a prediction from a second thread in the middle of a
    training step took the step's inputs from under its backward (a crash where the
    batches differed in size, wrong gradients where they did not). ``local.depth`` is
    the calling thread's own (0 outside its call), and ``lock`` holds a second thread's
    call until the first one's is over. It is re-entrant (an ``RLock``): a call stopped by
    Ctrl-C between taking it and letting it go leaves it with its thread, whose next
    call goes on, where a plain lock would have hung that thread's next call."""

    __slots__ = ("owner", "ops", "scope", "generation", "lock", "local")

    def __init__(self, owner):
        self.owner = owner
        self.ops = self.scope = self.generation = None
        self.lock = threading.RLock()
        self.local = _Depth()

    def bind(self):
        """Resolve the operations for the owner's arrays (once; again after a change)."""
        self.ops = ops_for(next(iter(self.owner.params.values())))
        self.scope = self.ops.scope()
        self.generation = REGISTRY.generation

    def __enter__(self):
        local = self.local
        if local.depth:
            local.depth += 1
            return self.ops
        self.lock.acquire()
        try:
            if self.generation != REGISTRY.generation:
                self.bind()
            self.scope.__enter__()
        except BaseException:
            self.lock.release()
            raise
        local.depth = 1
        return self.ops

    def __exit__(self, *exc):
        local = self.local
        local.depth -= 1
        if not local.depth:
            try:
                self.scope.__exit__(*exc)
            finally:
                self.lock.release()
        return False


class _Depth(threading.local):
    """How deep the calling thread is in a :class:`CallScope`'s call (0: outside it)."""

    depth = 0


def use_fast_paths(on=True):
    """Whether NumPy and CuPy arrays get their wings' fast paths (the default) or, with
    ``False``, the standard's reference operations like any other library: the settings'
    ``fast_paths``, for the rest of the process. Returns the previous setting.
    ``backends.configured(fast_paths=False)`` does the same for a block and gives it back."""
    previous = REGISTRY.settings.fast_paths
    REGISTRY._set_settings(REGISTRY.settings.replace(fast_paths=on))
    return previous
