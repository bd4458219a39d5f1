"""Finding SQL that is built by string formatting instead of passed parameters (pure: ast).

A statement given to ``execute`` / ``executemany`` / ``fetch`` / ``fetchrow`` / ``fetchval``
must be a plain string, or an f-string whose only interpolations are ``tables.<name>`` (the
fixed table identifiers of ``projections.write_rows.TableSet``, which validates them in
``__post_init__``) or a call of ``app.platform.sql_identifier.quote_identifier`` (imported as
itself or as ``q``), which validates and quotes a name. Anything else interpolated (a variable,
another call, ``%`` or ``.format()``) is reported with its file and line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SQL_METHODS = frozenset({"execute", "executemany", "fetch", "fetchrow", "fetchval"})
ALLOWED_OWNER = "tables"
IDENTIFIER_QUOTERS = frozenset({"quote_identifier", "q", "quote_identifiers"})
# Statements built by a named function the scanner cannot follow, each vetted by hand, with why:
VETTED_BUILDERS: dict[tuple[str, str], str] = {
    ("projections/write_rows.py", "kind.apply(tables, q(kind.stage))"):
        "each _Kind.apply is a fixed statement over q()/quote_identifiers() of TableSet's "
        "validated names and a constant conflict clause, reading a q()-quoted staging table",
    ("projections/write_rows.py", "_few_rows_statement(tables, few)"):
        "_Kind.apply statements as above, each reading unnest($n::<q()-quoted stage>[]) (n a "
        "placeholder number), joined as WITH w<i> AS (...): identifiers and numbers only",
    ("projections/replay.py", "definition"):
        "an index definition PostgreSQL itself printed (pg_get_indexdef) for a *_rebuild table "
        "replay created from the live one: server-generated DDL, no outside input",
}


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.why}"


def _allowed_interpolation(value: ast.expr) -> bool:
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        return value.func.id in IDENTIFIER_QUOTERS
    return (isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
            and value.value.id == ALLOWED_OWNER)


def _assignments(scope: ast.AST, name: str) -> list[ast.expr]:
    """Values assigned to ``name`` anywhere in ``scope`` (a function or the module)."""
    values: list[ast.expr] = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            values.append(node.value)
        elif (isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name)
              and node.target.id == name and node.value is not None):
            values.append(node.value)
    return values


def _problems(expr: ast.expr, scopes: list[ast.AST], seen: frozenset[str] = frozenset()
              ) -> list[str]:
    """Why ``expr``, used as SQL text, is not a fixed statement ([] when it is)."""
    if isinstance(expr, ast.Constant):
        return [] if isinstance(expr.value, str) else [f"SQL is a {type(expr.value).__name__}"]
    if isinstance(expr, ast.JoinedStr):
        out = []
        for part in expr.values:
            if isinstance(part, ast.FormattedValue) and not _allowed_interpolation(part.value):
                out.append(f"f-string interpolates {ast.unparse(part.value)!r}")
        return out
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mod):
        return [f"%-formatted SQL: {ast.unparse(expr)[:60]!r}"]
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _problems(expr.left, scopes, seen) + _problems(expr.right, scopes, seen)
    if (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute)
            and expr.func.attr == "format"):
        return [f".format() SQL: {ast.unparse(expr)[:60]!r}"]
    if isinstance(expr, ast.Name) and expr.id not in seen:
        for scope in scopes:
            values = _assignments(scope, expr.id)
            if values:
                return [p for v in values for p in _problems(v, scopes, seen | {expr.id})]
        return [f"SQL comes from {expr.id!r}, which is not a string assigned here"]
    return [f"SQL is built by {ast.unparse(expr)[:60]!r}"]


def _sql_argument(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    for keyword in call.keywords:
        if keyword.arg == "query":
            return keyword.value
    return None  # e.g. a Redis pipeline's execute(): no SQL at all


def scan_source(source: str, path: str) -> list[Finding]:
    """Every formatted SQL statement in one module's source."""
    tree = ast.parse(source, filename=path)
    findings: list[Finding] = []

    def visit(node: ast.AST, scopes: list[ast.AST]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            scopes = [node, *scopes]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_METHODS):
            sql = _sql_argument(node)
            if sql is not None and (path, ast.unparse(sql)) not in VETTED_BUILDERS:
                findings.extend(Finding(path, node.lineno, why)
                                for why in _problems(sql, scopes))
        for child in ast.iter_child_nodes(node):
            visit(child, scopes)

    visit(tree, [tree])
    return findings


def scan_packages(root: Path, packages: tuple[str, ...]) -> tuple[int, list[Finding]]:
    """(files scanned, findings) over every ``.py`` file of ``packages`` under ``root``."""
    files = sorted(p for package in packages for p in (root / package).rglob("*.py"))
    findings: list[Finding] = []
    for path in files:
        findings += scan_source(path.read_text(), str(path.relative_to(root)))
    return len(files), findings
