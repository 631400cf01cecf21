"""The package's shape: one concept per module (none over MAX_MODULE_LINES), no import cycle between modules,
a docstring on every module and public definition, and the front door exporting what it documents."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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
    assert len(auditkit.__all__) <= 20  # the verbs, the attacks they take, the results, the errors
    with pytest.warns(DeprecationWarning, match="auditkit.build_mlp moved to auditkit.victims.build_mlp"):
        from auditkit import build_mlp  # a name the front door exported before still imports, saying where it lives
    from auditkit.victims import build_mlp as at_home

    assert build_mlp is at_home


FRONT_DOOR_CALLS = (  # what a user calls first: each says its arguments and what it returns
    "auditkit.attacks.attack_names",
    "auditkit.data.binary_task",
    "auditkit.build_attack",
    "auditkit.victims.build_mlp",
    "auditkit.data.load_mnist_images",
    "auditkit.load_scenario",
    "auditkit.data.multiclass_task",
    "auditkit.register_attack",
    "auditkit.run_scenario",
    "auditkit.data.toy_colors",
    "auditkit.victims.train_mlp",
    "auditkit.write_report",
    "auditkit.Auditor.audit",
    "auditkit.AuditResult.summary",
    "auditkit.AuditResult.save",
    "auditkit.AuditResult.load",
    "auditkit.RunResult.summary",
    "auditkit.RunResult.save",
    "auditkit.RunResult.load",
    "auditkit.data.features.feature_data",
    "auditkit.testing.audit",
)


@pytest.mark.parametrize("dotted", FRONT_DOOR_CALLS)
def test_the_front_doors_calls_say_their_arguments_and_what_they_return(dotted):
    import importlib
    import inspect

    module_name, *attributes = dotted.split(".", 1)[0], *dotted.split(".")[1:]
    target = importlib.import_module(module_name)
    for index, attribute in enumerate(attributes):
        try:
            target = getattr(target, attribute)
        except AttributeError:  # a submodule
            target = importlib.import_module(".".join([module_name, *attributes[: index + 1]]))
    doc = inspect.getdoc(target) or ""
    signature = inspect.signature(target)
    documented = re.findall(r"^\s{4}\**(\w+)(?: \(.*\))?:", doc.split("Args:", 1)[-1].split("Returns:")[0], re.M)
    for name in (p for p in signature.parameters if p not in ("self", "cls")):
        assert "Args:" in doc and name in documented, f"{dotted}: argument {name!r} is not in its Args section"
    if signature.return_annotation not in (None, "None", inspect.Signature.empty):
        assert "Returns:" in doc, f"{dotted}: no Returns section"


SCENARIO_READERS = ("auditkit.config", "auditkit.running")  # the layers that see a whole scenario


def test_only_the_config_and_running_layers_see_a_whole_scenario():
    """Below them, code takes resolved values (a data config, a defense, a recipe), not the ``Scenario`` model:
    the victims, defenses, attacks and scoring know nothing of how a run was composed."""
    readers = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "auditkit.config.schema":
                if any(alias.name == "Scenario" for alias in node.names) and not name.startswith(SCENARIO_READERS):
                    readers.append(name)
    assert not readers, readers
