"""The package's shape: one concept per module (none over MAX_MODULE_LINES), no import cycle between modules,
a docstring on every module and public definition, and the front door exporting what it documents."""

from __future__ import annotations

import ast
from pathlib import Path

import auditkit

PACKAGE = Path(auditkit.__file__).parent
MAX_MODULE_LINES = 350


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def test_no_module_is_over_the_line_limit():
    long = {p.name: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_no_import_cycle_between_modules():
    """Module-level imports, type-only ones (``if TYPE_CHECKING:``) included: a cycle is a seam in the wrong place.
    An import inside a function runs when it is called, after every module loaded, and is not counted."""
    modules = _modules()

    def imported(tree: ast.Module) -> set[str]:
        nodes = [*tree.body, *(child for n in tree.body if isinstance(n, ast.If) for child in n.body)]
        return {n.module for n in nodes if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("auditkit")}

    edges = {name: imported(tree) for name, tree in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        state[name] = "open"
        for target in sorted(edges.get(name, ())):
            assert state.get(target) != "open", " -> ".join((*path, name, target))
            if target not in state:
                visit(target, (*path, name))
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, ())


def test_every_module_and_public_definition_says_what_it_is():
    missing = []
    for name, tree in _modules().items():
        if not ast.get_docstring(tree):
            missing.append(name)
        pending = [(node, name) for node in tree.body]
        while pending:
            node, owner = pending.pop()
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                if not ast.get_docstring(node):
                    missing.append(f"{owner}.{node.name}")
                if isinstance(node, ast.ClassDef):
                    pending += [(child, f"{owner}.{node.name}") for child in node.body]
    assert not missing, missing


def test_the_front_door_exports_what_it_lists():
    assert all(hasattr(auditkit, name) for name in auditkit.__all__)
    assert {"Auditor", "KKTAttack", "build_attack", "load_scenario", "run_scenario", "write_report"} <= set(
        auditkit.__all__
    )
    assert (PACKAGE / "py.typed").is_file() and auditkit.__version__
