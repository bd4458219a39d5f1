"""Errors a user can cause become one line naming the cause and the fix; bugs do not."""

from __future__ import annotations

import asyncpg
import pytest
from redis import exceptions as redis_errors

from app.error_lines import error_line
from app.platform.settings import SettingsError


def _raised_by_asyncpg() -> OSError:
    """A connection refusal as asyncpg raises it (its frames in the traceback)."""
    try:
        exec(compile("raise ConnectionRefusedError(111, 'Connect call failed')", "x", "exec"),
             {"__name__": "asyncpg.connect_utils"})
    except OSError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (SettingsError("REDIS_URL is malformed: x"), "REDIS_URL is malformed"),
        (redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:1."),
         "cannot reach Redis: Error 111"),
        (redis_errors.TimeoutError("Timeout connecting"), "cannot reach Redis"),
        (redis_errors.AuthenticationError("invalid password"), "Redis refused the credentials"),
        (redis_errors.ResponseError("Invalid stream ID specified as stream command argument"),
         "not a valid entry id"),
        (asyncpg.InvalidAuthorizationSpecificationError('role "mecove" does not exist'),
         "PostgreSQL refused the user in DATABASE_URL"),
        (asyncpg.InvalidPasswordError("password authentication failed"),
         "check its user and password"),
        (asyncpg.InvalidCatalogNameError('database "nodb" does not exist'), "createdb"),
        (asyncpg.UndefinedTableError('relation "x" does not exist'), "mecove migrate"),
        (_raised_by_asyncpg(), "cannot reach PostgreSQL"),
    ],
)
def test_an_error_the_user_can_cause_is_one_line_naming_it(exc: Exception,
                                                           expected: str) -> None:
    line = error_line(exc)

    assert line is not None and expected in line
    assert "\n" not in line


@pytest.mark.parametrize("exc", [KeyError("x"), ValueError("bug"),
                                 ConnectionRefusedError(111, "not from asyncpg")])
def test_anything_else_is_left_to_show_its_traceback(exc: Exception) -> None:
    assert error_line(exc) is None
