"""tests/minimum-versions.txt: the floor pyproject.toml declares is the floor the suite runs on.

Each lower bound of what ``make test`` installs (the dependencies and the ``test`` extra)
is pinned in the constraints file at that very version, so running the suite under it
(README, "The versions we test") tests the versions a user may be given. A bound raised
or lowered in one file and not the other fails here, and so does a package whose bound
differs between the lists it is in (the plot extra's matplotlib and the test extra's).
"""

import pathlib
import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

ROOT_PATH = pathlib.Path(ROOT)

#: pyproject.toml's extras (a test below fails where this misses one)
EXTRAS = ("cuda12", "cuda13", "torch", "jax", "array-api", "distributed", "plot", "test")


def _lists():
    """``{name: [Requirement]}`` for ``dependencies`` and each extra of pyproject.toml (its
    TOML arrays of quoted requirements, read without a TOML parser: Python 3.10 has none)."""
    text = (ROOT_PATH / "pyproject.toml").read_text()
    lists = {}
    for name, body in re.findall(r"^([A-Za-z0-9_-]+) = \[(.*?)\]", text, re.S | re.M):
        body = "\n".join(line.split("#")[0] for line in body.splitlines())
        found = re.findall(r'"([^"]+)"', body)
        if name == "dependencies" or name in EXTRAS:
            lists[name] = [Requirement(s) for s in found]
    return lists


def _bounds(requirements):
    return {canonicalize_name(req.name): Version(spec.version)
            for req in requirements for spec in req.specifier if spec.operator == ">="}


def _lower_bounds():
    """The lower bounds of what ``make test`` installs: the dependencies and the test extra."""
    lists = _lists()
    return {**_bounds(lists["dependencies"]), **_bounds(lists["test"])}


def _pins():
    pins = {}
    for line in (ROOT_PATH / "tests" / "minimum-versions.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"minimum-versions.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name.strip())] = Version(version.strip())
    return pins


def test_the_parser_reads_pyproject():
    text = (ROOT_PATH / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    assert sorted(re.findall(r"^([A-Za-z0-9_-]+) = \[", section, re.M)) == sorted(EXTRAS)
    bounds = _lower_bounds()
    assert bounds["numpy"] >= Version("2") and "pytest" in bounds and "jax" in bounds


def test_a_package_has_one_lower_bound_in_every_list():
    seen = {}
    for name, requirements in _lists().items():
        for package, bound in _bounds(requirements).items():
            seen.setdefault(package, {})[name] = bound
    for package, where in seen.items():
        assert len(set(where.values())) == 1, f"pyproject.toml: {package}'s lower bounds " \
                                              f"differ between lists: {where}"


@pytest.mark.parametrize("name", sorted(_lower_bounds()))
def test_each_lower_bound_is_pinned_at_that_version(name):
    bound, pins = _lower_bounds()[name], _pins()
    assert name in pins, f"pyproject.toml says {name}>={bound}; tests/minimum-versions.txt " \
                         f"pins no {name}"
    assert pins[name] == bound, f"pyproject.toml says {name}>={bound}; " \
                                f"tests/minimum-versions.txt pins {name}=={pins[name]}"
