"""The tests' shared set-up. The fixtures (``backend``, ``xp``, ``on_cupy``) come
from xpnet's pytest plugin, :mod:`framework.testing`: installed with the
package, and named here as well so the tests also run from a bare source tree
(``PYTHONPATH=. python -m pytest``), as on the GPU machine."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import backends  # noqa: E402

pytest_plugins = ["framework.testing"]


def to_host(x):
    return backends.to_numpy(x)
