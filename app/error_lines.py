"""One line for every error a user of the command line can cause, instead of a traceback.

``error_line(exc)`` names the cause and the fix of a failure the user can act on (a server
that does not answer, credentials it refuses, a database that does not exist, a malformed
setting or id), or returns None for anything else: a bug, whose traceback must be seen.
``app.cli`` prints the line and exits 1; ``MECOVE_DEBUG=true`` shows the traceback instead.
"""

from __future__ import annotations

import asyncpg
from redis import exceptions as redis_errors

from app.platform.settings import SettingsError

__all__ = ["error_line"]

_POSTGRES_HINT = "is PostgreSQL running, and is DATABASE_URL right?"
_REDIS_HINT = "is Redis running, and is REDIS_URL right?"
_REFUSED_USER = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)


def _raised_in(exc: BaseException, package: str) -> bool:
    """True if ``exc`` was raised from the code of ``package`` (e.g. ``asyncpg``)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == package:
            return True
        tb = tb.tb_next
    return False


def _postgres_line(exc: asyncpg.PostgresError) -> str:
    if isinstance(exc, _REFUSED_USER):
        return (f"PostgreSQL refused the user in DATABASE_URL: {exc}; check its user and "
                "password (or comment DATABASE_URL out in .env for `mecove dev`)")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return (f"PostgreSQL: {exc}; create it (createdb) or fix the database name at the "
                "end of DATABASE_URL")
    if isinstance(exc, asyncpg.UndefinedTableError):
        return (f"PostgreSQL: {exc}: the database of DATABASE_URL is not migrated; run "
                "`mecove migrate`")
    return f"PostgreSQL answered an error: {exc}"


def _redis_line(exc: redis_errors.RedisError) -> str:
    if isinstance(exc, redis_errors.AuthenticationError):
        return f"Redis refused the credentials in REDIS_URL: {exc}"
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return f"cannot reach Redis: {exc}; {_REDIS_HINT}"
    if "Invalid stream ID" in str(exc):
        return ("not a valid entry id: expected <milliseconds>-<sequence>, as "
                "`mecove dlq list` prints")
    return f"Redis answered an error: {exc}"


def error_line(exc: BaseException) -> str | None:
    """The one line for ``exc`` (without the ``mecove:`` prefix), or None if it is a bug."""
    if isinstance(exc, SettingsError):
        return str(exc)
    if isinstance(exc, asyncpg.PostgresError):
        return _postgres_line(exc)
    if isinstance(exc, redis_errors.RedisError):
        return _redis_line(exc)
    if isinstance(exc, OSError) and _raised_in(exc, "asyncpg"):
        return f"cannot reach PostgreSQL: {exc}; {_POSTGRES_HINT}"
    return None
