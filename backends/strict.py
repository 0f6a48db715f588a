"""array-api-strict: the Array API standard's minimal implementation, as a backend.

Nothing but the hooks :class:`backends.standard.StandardBackend` asks of a library: how
it is imported, and its devices (``CPU_DEVICE``, ``device1``, ``device2`` and ones
without float64). Everything else, the operations included, is the standard's. This
module and one line of :mod:`backends.registry` are all it took: the README's "adding a
backend" follows it.
"""

from backends.backend import Unusable
from backends.standard import StandardBackend


class StrictBackend(StandardBackend):
    """array-api-strict's arrays, on one of its devices."""

    name = "array_api_strict"
    modules = ("array_api_strict",)
    install = "pip install 'xpnet[array-api]' (array-api-strict)"

    @classmethod
    def _load(cls):
        try:
            import array_api_strict
        except ImportError:
            raise Unusable(f"array-api-strict is not installed; {cls.install}",
                           missing=True) from None
        return array_api_strict

    @classmethod
    def namespace_of(cls, x):
        return x.__array_namespace__()

    @classmethod
    def _info(cls):
        return cls.load().__array_namespace_info__()

    @classmethod
    def devices(cls):
        return [str(getattr(d, "_device", d)) for d in cls._info().devices()]

    @classmethod
    def default_device(cls):
        return cls._info().default_device()

    @classmethod
    def parse_device(cls, value):
        if value is None:
            return cls.default_device()
        if isinstance(value, cls.load().Device):
            return value
        for device in cls._info().devices():
            if str(getattr(device, "_device", device)) == str(value):
                return device
        raise Unusable(cls._no_device(value))

    def in_host_memory(self):
        return True  # every device of it is NumPy's memory

    def held_to_standard(self, version):
        return self.xp.ArrayAPIStrictFlags(api_version=version)
