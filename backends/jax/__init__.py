"""The JAX wing: JAX's arrays (CPU, GPU, TPU) as a backend.

``backend.py`` (:class:`~backends.jax.backend.JaxBackend`: the library, its devices, float64
behind ``JAX_ENABLE_X64``, host data placed by ``jax.device_put``) and ``compile.py``
(what the training step compiled by XLA through ``jax.jit`` needs of JAX itself; the step
is :mod:`framework.jit_step`). JAX's arrays are immutable: the operations are the
standard's (:class:`backends.ops.StandardOps`), whose writes go through
``array_api_extra.at`` and come back as new arrays, which the callers keep; ``ops.py``
runs each of them as one computation compiled by XLA.
"""
