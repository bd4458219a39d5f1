"""Every SQL statement of the product is parameterised: no value is formatted into SQL text."""

from __future__ import annotations

import pytest

from projections.write_rows import TableSet
from tests.faults.sql_scan import scan_packages, scan_source
from tests.processes import ROOT

PRODUCT_PACKAGES = ("app", "projections", "consumers")

SNIPPETS = {
    'await c.execute("SELECT $1", x)': 0,
    'await c.fetch("SELECT a " "FROM b WHERE c = $1", x)': 0,
    'await c.execute(f"INSERT INTO {tables.users} (id) VALUES ($1)", x)': 0,
    'await c.fetchval(query="SELECT 1")': 0,
    "await pipe.execute()": 0,
    'sql = "SELECT 1"\nawait c.fetchrow(sql)': 0,
    'await c.execute(f"SELECT * FROM t WHERE id = {user_id}")': 1,
    'await c.execute(f"INSERT INTO {table} VALUES ($1)", x)': 1,
    'await c.execute(f"SELECT {tables.users}, {name}")': 1,
    'await c.fetch("SELECT * FROM t WHERE a = %s" % a)': 1,
    'await c.fetch("SELECT * FROM t WHERE a = {}".format(a))': 1,
    'await c.fetchrow("SELECT * FROM t WHERE a = " + a)': 1,
    'sql = f"DELETE FROM t WHERE id = {i}"\nawait c.execute(sql)': 1,
    "await c.execute(statement)": 1,
}


@pytest.mark.parametrize("snippet", list(SNIPPETS))
def test_the_scanner_flags_formatted_sql_and_nothing_else(snippet: str) -> None:
    source = "async def f(c, pipe, tables, x, a, i, user_id, name, table, statement):\n" + \
        "\n".join("    " + line for line in snippet.splitlines())
    assert len(scan_source(source, "snippet.py")) == SNIPPETS[snippet], snippet


@pytest.mark.parametrize("name", ["users; DROP TABLE users", 'users"', "users ", "a-b", ""])
def test_table_sets_refuse_anything_but_plain_identifiers(name: str) -> None:
    with pytest.raises(ValueError):
        TableSet(users=name)


def test_every_sql_statement_in_app_projections_and_consumers_is_parameterised() -> None:
    scanned, findings = scan_packages(ROOT, PRODUCT_PACKAGES)
    assert scanned > 20, "the product packages were not found"
    assert findings == [], "SQL built by formatting:\n" + "\n".join(map(str, findings))
