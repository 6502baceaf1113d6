"""The package's shape: no import cycle, and modules and functions of a readable size.

Read from the source (no module is imported), so these run in well under a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "bilm"

# Modules above MAX_MODULE_LINES: each is one concept whose bulk is declarative (name why).
MODULE_EXCEPTIONS: dict[str, str] = {}
# Functions above MAX_FUNCTION_LINES (module:function): tables, or argument parsers' lists.
FUNCTION_EXCEPTIONS: dict[str, str] = {}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # not counting the docstring


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module, module: str, is_package: bool,
                       modules: frozenset[str] = frozenset()) -> set[str]:
    """Modules imported at import time or under ``if TYPE_CHECKING:`` (imports inside
    functions run later, on first use, and cannot make a cycle at import). ``from pkg import
    sub`` of a submodule (one of ``modules``) imports ``pkg.sub``, not names of ``pkg``'s
    ``__init__``: Python runs a package's ``__init__`` before its submodules anyway."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    package = module.split(".")
                    if not is_package:
                        package = package[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, base] if base else package)
                subs = {f"{base}.{alias.name}" for alias in node.names}
                found.update(subs)  # "from bilm.io import files": the module bilm.io.files
                if not subs <= modules:  # some names come from base itself
                    found.add(base)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = _top_level_imports(tree, name, path.name == "__init__.py",
                                      frozenset(modules))
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    # the check itself: a -> b -> c -> a is found, a tree is not
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from bilm.x import y\ndef f():\n    import bilm.z\n")
    assert _top_level_imports(tree, "bilm.w", False) == {"typing", "typing.TYPE_CHECKING",
                                                         "bilm.x", "bilm.x.y"}
    tree = ast.parse("from bilm.x import y\n")  # y a module: bilm.x's __init__ not counted
    assert _top_level_imports(tree, "bilm.w", False, frozenset({"bilm.x.y"})) == {"bilm.x.y"}


def test_no_import_cycle_in_the_package():
    graph = _graph()
    assert len(graph) > 30 and "bilm.options" in graph["bilm.model.encoder"] | set().union(
        *graph.values())  # the walk sees the package
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modules_and_functions_stay_readable():
    long_modules, long_functions = [], []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        n_lines = len(text.splitlines())
        if n_lines > MAX_MODULE_LINES and name not in MODULE_EXCEPTIONS:
            long_modules.append(f"{name}: {n_lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                doc = node.body[0]  # a docstring is documentation, not length to read through
                if (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                        and isinstance(doc.value.value, str)):
                    length -= doc.end_lineno - doc.lineno + 1
                key = f"{name}:{node.name}"
                if length > MAX_FUNCTION_LINES and key not in FUNCTION_EXCEPTIONS:
                    long_functions.append(f"{key}: {length} lines")
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
