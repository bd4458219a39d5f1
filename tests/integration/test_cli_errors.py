"""Every error a user can cause is one line on stderr and a non-zero exit, never a traceback.

Each row runs ``python -m app.cli`` as a real process, in an empty folder (no ``.env``, no
``.mecove``), with the URLs of the row.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.devtools.ports import free_port
from tests.conftest import TestServers, database_url_for

TEST_MASTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes 0..31, base64
OPERATOR_COMMANDS = [["status"], ["replay"], ["dlq", "list"], ["trim"]]
SERVICE_COMMANDS = [["consume", "projector"], ["api"], ["migrate"]]


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "MECOVE_PORT": str(free_port()),
                   "MECOVE_LOG_FORMAT": "json", "MECOVE_MASTER_KEY": TEST_MASTER_KEY, **env}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


def assert_one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and expected in lines[0], done.stderr


def _with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}").geturl()


def _rows() -> list[tuple[str, list[str], dict[str, str], str]]:
    """(name, arguments, which URLs to break and how, expected words)."""
    rows = []
    for command in OPERATOR_COMMANDS + SERVICE_COMMANDS:
        if command != ["migrate"]:
            rows.append((f"{command[0]}-redis-unreachable", command, {"redis": "closed"},
                         "cannot reach Redis"))
        if command != ["dlq", "list"]:  # dead letters live in Redis only
            rows.append((f"{command[0]}-postgres-unreachable", command,
                         {"postgres": "closed"}, "cannot reach PostgreSQL"))
    rows += [
        ("wrong-role", ["status"], {"postgres": "role"}, "refused the user in DATABASE_URL"),
        ("missing-database", ["status"], {"postgres": "missing"}, "does not exist; create it"),
        ("database-port-not-a-number", ["status"], {"postgres": "port"},
         "DATABASE_URL is malformed: its port"),
        ("redis-port-not-a-number", ["dlq", "list"], {"redis": "port"},
         "REDIS_URL is malformed: its port"),
        ("redis-database-not-a-number", ["trim"], {"redis": "db"},
         "REDIS_URL is malformed: the database"),
        ("malformed-dead-letter-id", ["dlq", "show", "not-an-id"], {}, "not a valid entry id"),
        ("not-migrated", ["status"], {"postgres": "empty"}, "run `mecove migrate`"),
    ]
    return rows


def _urls(servers: TestServers, database_url: str, broken: dict[str, str]) -> dict[str, str]:
    closed = free_port()
    admin = urlsplit(servers.admin_database_url)
    redis_url = {
        "closed": f"redis://127.0.0.1:{closed}/0",
        "port": "redis://127.0.0.1:63x9/0",
        "db": servers.redis_url.rsplit("/", 1)[0] + "/abc",
    }.get(broken.get("redis", ""), servers.redis_url)
    database = {
        "closed": f"postgresql://postgres@127.0.0.1:{closed}/postgres",
        "role": _with_user(database_url, "no_such_role_mecove"),
        "missing": database_url_for(servers.admin_database_url, "no_such_database_mecove"),
        "port": f"postgresql://postgres@{admin.hostname}:54x2/postgres",
        "empty": servers.admin_database_url,  # a database without MeCove's tables
    }.get(broken.get("postgres", ""), database_url)
    return {"DATABASE_URL": database, "REDIS_URL": redis_url}


@pytest.mark.parametrize(("name", "args", "broken", "expected"), _rows(),
                         ids=[row[0] for row in _rows()])
def test_a_user_error_is_one_line_and_a_failed_exit(
    name: str, args: list[str], broken: dict[str, str], expected: str,
    servers: TestServers, database_url: str, tmp_path: Path,
) -> None:
    done = run_cli(args, tmp_path, **_urls(servers, database_url, broken))

    assert_one_line(done, expected)


def test_mecove_debug_shows_the_traceback(servers: TestServers, tmp_path: Path) -> None:
    urls = {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
            "REDIS_URL": servers.redis_url}

    done = run_cli(["status"], tmp_path, MECOVE_DEBUG="true", **urls)

    assert done.returncode != 0 and "Traceback" in done.stderr


def test_mecove_version_prints_the_package_version(tmp_path: Path) -> None:
    done = run_cli(["--version"], tmp_path)

    assert done.returncode == 0 and done.stdout.startswith("mecove 0.")
