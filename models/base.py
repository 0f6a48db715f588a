"""What every model shares: checkpoint methods on top of ``params`` and ``config``."""

from framework import checkpoint


class Network:
    """Base of the models: ``save_params`` / ``load_params`` for any ``params`` dict.

    A subclass sets ``params`` (name -> array), ``dtype``, and ``config()``,
    the constructor arguments that fix the architecture.
    """

    def config(self):
        raise NotImplementedError

    def save_params(self, path):
        """Write the parameters, architecture and dtype to ``path`` (an ``.npz``), atomically."""
        checkpoint.save(path, self)

    def load_params(self, path):
        """Copy parameters from ``path`` into this network's arrays, on its own backend.

        Raises ``framework.checkpoint.CheckpointError`` and changes nothing
        if the file is damaged or holds another architecture.
        """
        checkpoint.load(path, self)
