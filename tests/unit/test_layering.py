"""Imports point one way: schema ← app.platform ← projections, consumers ← app ← app.cli.

Every module of the product is parsed (not imported) and each of its imports of our own code
checked against the layer it sits in, wherever the import is written: a deferred import inside
a function is still an upward dependency. Only ``app/cli.py`` may defer imports (so that
``mecove --help`` does not load the whole service).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("app", "consumers", "projections", "schema")
OURS = (*PRODUCT, "tests", "bench")

# What a layer may import of ours (itself included); a module not listed here may import any
# product code, within the rules of ``FORBIDDEN``.
ALLOWED: dict[str, tuple[str, ...]] = {
    "schema": ("schema",),
    "app.platform": ("schema", "app.platform"),
    "projections": ("schema", "app.platform", "projections"),
    "consumers": ("schema", "app.platform", "consumers"),
    # The clients every process opens: used by the ingress and the operator's commands.
    "app.wiring.clients": ("schema", "app.platform", "app.wiring.clients"),
}

# (importing modules, imported module, exempt importers): nothing in the first may import the
# second, unless it is one of the exempt ones.
FORBIDDEN: list[tuple[tuple[str, ...], str, tuple[str, ...]]] = [
    (PRODUCT, "tests", ()),
    (PRODUCT, "bench", ()),
    # Dev tooling is never part of the product; the command line offers its commands.
    (("app",), "app.devtools", ("app.devtools", "app.cli")),
    # The consumers' wiring is above the ingress, the operations and dev tooling.
    (("app",), "app.wiring.consumer_service", ("app.wiring", "app.cli")),
    (PRODUCT, "app.cli", ()),
]

MAY_DEFER = ("app.cli",)


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    line: int
    deferred: bool  # written inside a function body

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}"


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert node.level == 0, "relative imports are not used here"
    assert node.module is not None
    return [node.module]


def imports_of(path: Path) -> list[Import]:
    """Every import of our code in the module at ``path``, deferred ones marked."""
    importer = _module_name(path)
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(Import(importer, name, node.lineno, in_function)
                         for name in _imported_names(node) if _within(name, OURS))
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), in_function=False)
    return found


def product_imports() -> list[Import]:
    paths = sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))
    return [found for path in paths for found in imports_of(path)]


def _layer(module: str) -> str | None:
    """The most specific layer of ``ALLOWED`` that ``module`` belongs to."""
    layers = [layer for layer in ALLOWED if _within(module, (layer,))]
    return max(layers, key=len) if layers else None


def layering_violations(imports: list[Import]) -> list[str]:
    """One line per import that points the wrong way."""
    violations = []
    for found in imports:
        layer = _layer(found.importer)
        if layer is not None and not _within(found.imported, ALLOWED[layer]):
            violations.append(f"{found}: {layer} may import only {', '.join(ALLOWED[layer])}")
        for importers, imported, exempt in FORBIDDEN:
            if (_within(found.importer, importers) and not _within(found.importer, exempt)
                    and _within(found.imported, (imported,))):
                violations.append(f"{found}: forbidden")
    return violations


def deferred_imports(imports: list[Import]) -> list[str]:
    """Imports of our code inside function bodies, outside the modules allowed to defer."""
    return [str(found) for found in imports
            if found.deferred and not _within(found.importer, MAY_DEFER)]


def test_every_import_of_our_code_points_down_the_layers() -> None:
    assert layering_violations(product_imports()) == []


def test_no_module_but_the_command_line_defers_an_import_of_our_code() -> None:
    assert deferred_imports(product_imports()) == []


@pytest.mark.parametrize(("importer", "imported"), [
    ("app.platform.runtime.process", "projections.projector"),
    ("schema.events", "app.platform.settings"),
    ("consumers.replier.reply_handler", "app.ingress.signature"),
    ("projections.replay", "consumers.llm.llm_config"),
    ("app.ingress.app_factory", "app.devtools.dev_command"),
    ("app.operations.commands", "app.wiring.consumer_service"),
    ("app.wiring.clients", "projections.projector"),
    ("app.ingress.health_routes", "tests.service"),
])
def test_an_upward_import_is_reported(importer: str, imported: str) -> None:
    assert layering_violations([Import(importer, imported, 1, deferred=False)]) != []


@pytest.mark.parametrize(("importer", "imported"), [
    ("projections.projector", "app.platform.runtime.consumer_runtime"),
    ("consumers.replier.reply_handler", "consumers.llm.llm_config"),
    ("app.ingress.app_factory", "app.wiring.clients"),
    ("app.wiring.consumer_service", "projections.projector"),
    ("app.devtools.dev_command", "app.supervisor"),
    ("app.cli", "app.devtools.simulate.simulate_options"),
])
def test_a_downward_import_is_accepted(importer: str, imported: str) -> None:
    assert layering_violations([Import(importer, imported, 1, deferred=False)]) == []


def test_a_deferred_import_outside_the_command_line_is_reported() -> None:
    deferred = Import("app.operations.commands", "projections.replay", 1, deferred=True)
    assert deferred_imports([deferred]) == [str(deferred)]
    assert deferred_imports([Import("app.cli", "app.wiring.consumer_service", 1, True)]) == []
