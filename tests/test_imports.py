"""The packages' import graph: floors that only import downwards, and no circle anywhere.

Every ``import`` statement in ``backends``, ``framework`` and ``models`` (those
inside functions too) is an edge from its module to the project module it
names; a package's ``__init__`` counts as the module ``backends`` (Python
importing a package's parents along the way is not an edge). ``backends``
imports nothing above it, ``framework`` nothing from ``models``, and the graph
has no cycle, so any module can be imported first.
"""

import ast
import pathlib

from tests.conftest import ROOT

PACKAGES = ("backends", "framework", "models")
FLOORS = {"backends": {"backends"}, "framework": {"backends", "framework"},
          "models": {"backends", "framework", "models"}}


def modules():
    """``{dotted name: path}`` of every module of the three packages."""
    found = {}
    for top in PACKAGES:
        for path in pathlib.Path(ROOT, top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def edges(known):
    """``{module: {modules it imports}}`` among the project's modules."""
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for alias in node.names:  # a submodule where there is one, else the module
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in known else base)
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def test_nothing_imports_upwards():
    graph = edges(modules())
    wrong = [f"{a} imports {b}" for a, targets in graph.items() for b in targets
             if b.split(".")[0] not in FLOORS[a.split(".")[0]]]
    assert not wrong, wrong


def test_there_is_no_import_circle():
    graph = edges(modules())
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_walk_sees_the_imports():
    graph = edges(modules())
    assert "backends.ops" in graph["backends.backend"]  # inside _reference_ops: counted
    assert "backends.arrays" in graph["backends"]
    assert {"framework.steps", "framework.trainer_state", "framework.interrupts"} <= \
        graph["framework.trainer"]
    assert "framework.checkpoint" in graph["framework.trainer_state"]  # import ... as ckpt
