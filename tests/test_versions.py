"""tests/minimum-versions.txt: the floor pyproject.toml declares is the floor the suite runs on.

Each lower bound of what ``make test`` installs (the dependencies and the ``test`` extra)
is pinned in the constraints file at that very version, so running the suite under it
(README, "The versions we test") tests the versions a user may be given. A bound raised
or lowered in one file and not the other fails here.
"""

import pathlib
import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT

ROOT_PATH = pathlib.Path(ROOT)


def _list(text, name):
    """The quoted requirements of the TOML array ``name = [...]`` in ``text``."""
    match = re.search(rf"^{re.escape(name)} = \[(.*?)\]", text, re.S | re.M)
    assert match, f"pyproject.toml has no {name} = [...]"
    body = "\n".join(line.split("#")[0] for line in match.group(1).splitlines())
    return [Requirement(s) for s in re.findall(r'"([^"]+)"', body)]


def _lower_bounds():
    text = (ROOT_PATH / "pyproject.toml").read_text()
    bounds = {}
    for req in _list(text, "dependencies") + _list(text, "test"):
        for spec in req.specifier:
            if spec.operator == ">=":
                bounds[req.name.lower()] = Version(spec.version)
    return bounds


def _pins():
    pins = {}
    for line in (ROOT_PATH / "tests" / "minimum-versions.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"minimum-versions.txt: {line!r} is not NAME==VERSION"
            pins[name.strip().lower()] = Version(version.strip())
    return pins


def test_the_parser_reads_pyproject():
    bounds = _lower_bounds()
    assert bounds["numpy"] >= Version("2") and "pytest" in bounds and "jax" in bounds


@pytest.mark.parametrize("name", sorted(_lower_bounds()))
def test_each_lower_bound_is_pinned_at_that_version(name):
    bound, pins = _lower_bounds()[name], _pins()
    assert name in pins, f"pyproject.toml says {name}>={bound}; tests/minimum-versions.txt " \
                         f"pins no {name}"
    assert pins[name] == bound, f"pyproject.toml says {name}>={bound}; " \
                                f"tests/minimum-versions.txt pins {name}=={pins[name]}"
