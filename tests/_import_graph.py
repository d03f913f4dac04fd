"""The import graph inside one reslab package, for the tests that assert it has no cycle.

Every import counts, wherever it is written: at the top, inside a function (a lazy import is still an
arrow, STYLE.md habit 14) or as ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
from pathlib import Path


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, by file stem (``"__init__"``: the package itself,
    imported for a name it defines). ``package`` is a flat package such as ``"reslab.models"``."""
    root = Path(importlib.import_module(package).__file__).parent
    graph = {}
    for path in sorted(root.glob("*.py")):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for module, names in _imported(node, package):
                targets |= _inside(module, names, package, root)
        graph[path.stem] = targets - {path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its modules in order, the first repeated at the end), else None."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        return list(e.args[1])
    return None


def _imported(node: ast.AST, package: str) -> list[tuple[str, list[str]]]:
    """(absolute module, names taken from it) for each import ``node`` makes."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:  # relative to the flat package: one level up is the package
            module = ".".join([package, module]) if module else package
        return [(module, [alias.name for alias in node.names])]
    if isinstance(node, ast.Call) and _callee(node) == "import_module" and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [(arg.value, [])]
    return []


def _callee(node: ast.Call) -> str | None:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)


def _inside(module: str, names: list[str], package: str, root: Path) -> set[str]:
    if module.startswith(package + "."):
        return {module[len(package) + 1 :].split(".")[0]}
    if module != package:
        return set()
    # ``from package import x``: the submodule x, or a name the package's __init__ defines
    return {n if (root / f"{n}.py").is_file() else "__init__" for n in names} or {"__init__"}
