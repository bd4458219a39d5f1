"""PostgreSQL migrations (Piccolo), apart from the pool (``database``).

Importing Piccolo's app registry (``schema.piccolo_conf``) pulls in its migration machinery:
black, pydantic, yaml and ~200 more modules, ~13 MB of a process's memory. Only the commands
that migrate import this module; the ingress and the consumers only open the pool.
"""

from __future__ import annotations

import os

from piccolo.apps.migrations.commands.forwards import run_forwards

from schema.piccolo_conf import DB

__all__ = ["run_migrations"]


async def run_migrations(database_url: str) -> None:
    """Apply every Piccolo migration of the ``mecove`` app that has not run yet."""
    os.environ.setdefault("PICCOLO_CONF", "schema.piccolo_conf")  # how Piccolo finds our app
    DB.config = {"dsn": database_url}
    result = await run_forwards(app_name="mecove")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
