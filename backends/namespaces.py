"""The old import path of what the registry now says of the libraries (:mod:`backends.registry`,
:mod:`backends.backend`), kept so that existing imports keep working: ``LIBRARIES`` maps
each name to its backend class (``usable()``, ``load()``, ``devices()``)."""

import types

from backends.arrays import has_float64  # noqa: F401
from backends.backend import Unusable  # noqa: F401
from backends.registry import REFUSED, REGISTRY

NAMES = REGISTRY.names
LIBRARIES = types.MappingProxyType({name: REGISTRY.backend_class(name) for name in NAMES})
INSTALL = {name: cls.install for name, cls in LIBRARIES.items() if cls.install}
__all__ = ["NAMES", "LIBRARIES", "INSTALL", "REFUSED", "Unusable", "has_float64"]
