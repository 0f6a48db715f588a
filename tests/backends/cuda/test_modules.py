"""backends/cuda/*.py: every global name their functions use is defined in the module.

The modules that import CuPy cannot be imported without a GPU, so a misspelt
name in them would first fail on a GPU machine. Here each module is compiled
and every global its code loads is looked for among its top-level names and
Python's builtins.
"""

import ast
import builtins
import dis
import pathlib
import types

import pytest

CUDA = pathlib.Path(__file__).resolve().parents[3] / "backends" / "cuda"


def defined(tree):
    names = set(dir(builtins)) | {"__annotations__", "__name__", "__module__", "__qualname__"}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):  # NAME = ... and NAME, OTHER = ...
            names.update(n.id for t in node.targets for n in ast.walk(t)
                         if isinstance(n, ast.Name))
    return names


def loaded_globals(code):
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            yield ins.argval
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from loaded_globals(const)


@pytest.mark.parametrize("path", sorted(CUDA.glob("*.py")), ids=lambda p: p.name)
def test_every_global_a_function_uses_is_defined(path):
    text = path.read_text()
    known = defined(ast.parse(text))
    missing = sorted(set(loaded_globals(compile(text, str(path), "exec"))) - known)
    assert not missing, f"{path.name} uses undefined names: {missing}"
