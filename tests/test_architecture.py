"""The package layout's rules (DESIGN.md, Layout), checked on the source with `ast`: no tamrin module is imported.

- No import cycles among tamrin modules (imports that run when a module is imported).
- Dependencies point one way: cli -> recipes -> trainer -> metrics_handlers, datasets, models ->
  preprocessors -> configs, hub. Models and datasets never import each other, nothing below the
  trainer imports it, and the trainer never imports the command line or the recipes.
- No private name (a leading underscore) is imported from another module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tamrin"

ABOVE_THE_TRAINER = ("tamrin.recipes", "tamrin.tools", "tamrin.commands", "tamrin.cli")
BELOW_THE_TRAINER = ("tamrin.models", "tamrin.datasets", "tamrin.metrics_handlers")
FORBIDDEN = {  # importer package: what it must never import (at any level, inside functions too)
    **{
        base: ("tamrin.preprocessors", *BELOW_THE_TRAINER, "tamrin.trainer", *ABOVE_THE_TRAINER)
        for base in ("tamrin.configs", "tamrin.hub", "tamrin.registry")
    },
    "tamrin.preprocessors": (*BELOW_THE_TRAINER, "tamrin.trainer", *ABOVE_THE_TRAINER),
    "tamrin.models": ("tamrin.datasets", "tamrin.trainer", *ABOVE_THE_TRAINER),
    "tamrin.datasets": ("tamrin.models", "tamrin.trainer", *ABOVE_THE_TRAINER),
    "tamrin.metrics_handlers": ("tamrin.trainer", *ABOVE_THE_TRAINER),
    "tamrin.trainer": ABOVE_THE_TRAINER,
    "tamrin.recipes": ("tamrin.tools", "tamrin.commands", "tamrin.cli"),
}


@dataclass(frozen=True)
class Import:
    importer: str  # the module holding the import statement
    module: str  # the module named after `from` (or after `import`)
    names: tuple[str, ...]  # the names imported from it (empty for `import x.y`)
    at_import_time: bool  # False inside a function or an `if TYPE_CHECKING:` block


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(importer: str) -> Iterator[Import]:
    """Every import statement of a tamrin module, marked with whether it runs when the module is imported."""
    tree = ast.parse(MODULES[importer].read_text(encoding="utf-8"))

    def visit(node: ast.AST, at_import_time: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(importer, alias.name, (), at_import_time)
            elif isinstance(child, ast.ImportFrom):
                names = tuple(alias.name for alias in child.names)
                yield Import(importer, _absolute(importer, child), names, at_import_time)
            else:  # a function body, or an `if TYPE_CHECKING:` block, does not run at import time
                deferred = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or (
                    isinstance(child, ast.If) and _is_type_checking(child)
                )
                yield from visit(child, at_import_time and not deferred)

    yield from visit(tree, True)


def tamrin_targets(statement: Import) -> set[str]:
    """The tamrin modules a statement imports: `from tamrin.a import b` is tamrin.a.b when that is a module."""
    if statement.module != "tamrin" and not statement.module.startswith("tamrin."):
        return set()
    submodules = {f"{statement.module}.{name}" for name in statement.names} & MODULES.keys()
    targets = submodules or {statement.module}
    if len(submodules) < len(statement.names):  # some names are attributes of the module itself
        targets.add(statement.module)
    return {_owning_module(target) for target in targets}


def _owning_module(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


ALL_IMPORTS = [statement for importer in MODULES for statement in imports_of(importer)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the tamrin modules it imports when it is imported (package parents not counted)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for statement in ALL_IMPORTS:
        if statement.at_import_time:
            graph[statement.importer] |= tamrin_targets(statement) - {statement.importer}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# -- the checker itself -----------------------------------------------------------------------------------
def test_the_checker_sees_a_cycle_and_the_real_modules() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert {"tamrin.models.base", "tamrin.datasets.base", "tamrin.trainer.trainer", "tamrin.recipes"} <= MODULES.keys()
    graph = import_graph()
    assert "tamrin.models.config" in graph["tamrin.models.base"]
    assert "tamrin.preprocessors.images" in graph["tamrin.models.image_classifier"]


# -- the rules ---------------------------------------------------------------------------------------------
def test_tamrin_modules_import_one_another_without_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, f"Import cycles among tamrin modules (module-level imports): {cycles}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    wrong = sorted(
        f"{statement.importer} imports {target}"
        for statement in ALL_IMPORTS
        if _inside(statement.importer, package)
        for target in tamrin_targets(statement)
        if any(_inside(target, forbidden) for forbidden in FORBIDDEN[package])
    )
    assert not wrong, f"{package} must not import {', '.join(FORBIDDEN[package])}: {wrong}"


def test_no_private_name_is_imported_from_another_module() -> None:
    private = sorted(
        (statement.importer, statement.module, name)
        for statement in ALL_IMPORTS
        if tamrin_targets(statement)
        for name in statement.names
        if name.startswith("_") and not name.startswith("__") and statement.module != statement.importer
    )
    assert not private, f"Private names imported across modules (importer, module, name): {private}"


def test_a_private_module_is_imported_only_inside_its_own_package() -> None:
    wrong = sorted(
        f"{statement.importer} imports {target}"
        for statement in ALL_IMPORTS
        for target in tamrin_targets(statement)
        if target.rsplit(".", 1)[-1].startswith("_") and not _inside(statement.importer, target.rsplit(".", 1)[0])
    )
    assert not wrong, f"Private modules imported from outside their package: {wrong}"
