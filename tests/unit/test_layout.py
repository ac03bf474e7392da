"""The package's structure: imports point down, no cycle, the schema imports nothing above it."""

import ast
from pathlib import Path
from typing import Dict, Set

from ..conftest import REPO

PACKAGE = REPO / "avalanche_freeze"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> Set[str]:
    """The package modules ``path`` imports (``from .x import y`` resolved to ``avalanche_freeze.x.y``
    when that is a module, else ``avalanche_freeze.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = _module_level(tree) if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("avalanche_freeze"):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("avalanche_freeze")}
    return found - {module}


def _module_level(tree: ast.AST) -> list:
    """Every node run when the module is imported: all but the bodies of functions."""
    out, todo = [], list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return out


MODULES = {_module(p) for p in PACKAGE.rglob("*.py")}


def _graph(top_level_only: bool = True) -> Dict[str, Set[str]]:
    return {_module(p): _imports(p, top_level_only=top_level_only) for p in PACKAGE.rglob("*.py")}


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state: Dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_no_package_module_is_imported_inside_a_function():
    """Deferred imports were how the old cycle was hidden; the layout needs none."""
    late = []
    for path in PACKAGE.rglob("*.py"):
        for func in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                            "avalanche_freeze")):
                        late.append(f"{_module(path)}.{func.name}: {node.module}")
    assert not late


def test_the_schema_imports_no_plugin_recipe_or_logger():
    schema = _imports(PACKAGE / "run" / "config.py", top_level_only=False)
    for module in schema:
        assert module in {"avalanche_freeze.plugins.config", "avalanche_freeze.freezing.config"} or not (
            module.startswith(("avalanche_freeze.plugins", "avalanche_freeze.freezing"))), module
        assert module not in {"avalanche_freeze.run.recipes", "avalanche_freeze.run.wandb_logging",
                              "avalanche_freeze.run.experiment"}, module
    assert "avalanche_freeze.plugins.config" in schema  # the sections themselves are read


def test_lower_floors_do_not_import_the_run_layer_or_the_cli():
    for module, deps in _graph().items():
        if not module.startswith(("avalanche_freeze.run", "avalanche_freeze.cli", "avalanche_freeze.__main__")):
            upward = {d for d in deps if d.startswith(("avalanche_freeze.run", "avalanche_freeze.cli"))}
            assert not upward, (module, upward)


def test_the_package_ships_its_type_hints_marker():
    """PEP 561: ``py.typed`` in the package and in its package data, so type checkers read the hints."""
    assert (PACKAGE / "py.typed").is_file()
    assert "avalanche_freeze = py.typed" in (REPO / "setup.cfg").read_text()
