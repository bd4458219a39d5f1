"""``mecove dev``: embedded servers (unless URLs are given), migrations, the whole service.

Order of a run: lock the data folder (a second ``mecove dev`` on it refuses, see
``dev_instance``), start embedded Redis and PostgreSQL for whichever of ``REDIS_URL`` /
``DATABASE_URL`` is not set (data in one folder, kept across restarts), create the ``mecove``
database, apply migrations, publish the URLs in the data folder (for the operator's
commands), print the banner (webhook URL, both database URLs and where each came from, what
runs in dry-run), then supervise the ingress and every consumer exactly as ``mecove up`` does,
and the embedded servers too: if one dies, everything stops with one line.
Ctrl-C or SIGTERM stops the service first, then the embedded servers; nothing is left running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from app.console.dev_token import console_link, dev_console_token
from app.devtools.dev_instance import DataFolderBusy, DevInstance
from app.devtools.dev_master_key import dev_master_key
from app.devtools.embedded.embedded_servers import EmbeddedServers
from app.devtools.embedded.server_process import ServerStartError
from app.platform.migrations import run_migrations
from app.platform.settings import Settings
from app.platform.sql_identifier import quote_identifier
from app.supervisor import supervise

DATABASE_NAME = "mecove"


class DevStartError(Exception):
    """``mecove dev`` cannot start; the message is one line for an operator."""


def say(line: str) -> None:
    """One line for the person at the terminal (stderr, like the supervisor's own lines)."""
    print(f"mecove dev: {line}", file=sys.stderr, flush=True)


def without_password(url: str) -> str:
    """``url`` safe to print: a password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def given_urls_line(settings: Settings) -> str | None:
    """Which server URLs were given and where from (``.env`` is easy to forget), or None."""
    given = [f"{name} from {settings.origin(name)}"
             for name, url in (("DATABASE_URL", settings.database_url),
                               ("REDIS_URL", settings.redis_url)) if url]
    if not given:
        return None
    hint = (" (comment them out in .env to use embedded servers)"
            if any(g.endswith(" .env") for g in given) else "")
    return f"using {' and '.join(given)}; no embedded server for those{hint}"


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database ``name`` on the server of ``admin_url`` unless it exists."""
    connection = await asyncpg.connect(admin_url)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f"CREATE DATABASE {quote_identifier(name)}")
    finally:
        await connection.close()


async def _prepare_database(admin_url: str | None, database_url: str) -> None:
    if admin_url is not None:
        await ensure_database(admin_url, DATABASE_NAME)
    await run_migrations(database_url)


def banner(settings: Settings, data_dir: Path | None, embedded: dict[str, str]) -> list[str]:
    """The startup lines: where to post webhooks, the two URLs, what runs in dry-run.

    ``embedded`` maps ``DATABASE_URL`` / ``REDIS_URL`` to a note for each embedded server.
    """
    lines = [f"webhook       http://127.0.0.1:{settings.port}/webhooks/whatsapp "
             f"(health: /health, ready: /ready)"]
    for name, url in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url)):
        origin = embedded.get(name, f"from {settings.origin(name)}")
        lines.append(f"{name:<13} {without_password(url)}  ({origin})")
    if data_dir is not None and embedded:
        lines.append(f"data          {data_dir} (kept across restarts; logs in {data_dir}/logs)")
    if settings.whatsapp_dry_run:
        lines.append("WhatsApp      DRY-RUN: WHATSAPP_PHONE_NUMBER_ID / WHATSAPP_PERMANENT_TOKEN "
                     "not set; replies are recorded (ReplySent dry_run=true), not sent")
    else:
        lines.append(f"WhatsApp      replies sent through {settings.whatsapp_api_base_url}")
    if settings.groq_api_key is None:
        lines.append("LLM           GROQ_API_KEY not set: every reply is the fallback 'Noted.'")
    else:
        lines.append("LLM           Groq (model and parameters from llm.yaml)")
    if settings.whatsapp_app_secret is None:
        lines.append("signatures    WHATSAPP_APP_SECRET not set: webhooks are accepted unsigned")
    else:
        lines.append("signatures    X-Hub-Signature-256 checked with WHATSAPP_APP_SECRET")
    lines.append("Ctrl-C stops everything")
    return lines


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    return None


def run_dev(settings: Settings, data_dir: Path, commands: list[list[str]]) -> int:
    """Run ``mecove dev`` until interrupted; returns the process exit code.

    ``commands`` are the service processes (``app.supervisor.service_commands``), supervised
    as ``mecove up`` does; they get ``DATABASE_URL`` / ``REDIS_URL`` through ``os.environ``.
    """
    try:
        return _run_dev(settings, data_dir, commands)
    except KeyboardInterrupt:  # a stop that came while an error was being reported
        return 0


def _run_dev(settings: Settings, data_dir: Path, commands: list[list[str]]) -> int:
    started = time.monotonic()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # until supervise takes over, a stop
        signal.signal(stop_signal, _interrupt)  # is a KeyboardInterrupt that runs the finally
    data_dir = data_dir.expanduser().resolve()
    servers: EmbeddedServers | None = None
    instance = DevInstance(data_dir)
    try:
        instance.acquire()  # before anything touches the folder
        given = given_urls_line(settings)
        if given is not None:
            say(given)
        embedded: dict[str, str] = {}
        database_url, redis_url = settings.database_url, settings.redis_url
        admin_url: str | None = None
        if not database_url or not redis_url:
            say(f"starting embedded servers in {data_dir}")
            servers = EmbeddedServers(data_dir, postgres=not database_url, redis=not redis_url,
                                      report=say).start()
            if servers.postgres is not None:
                admin_url = servers.postgres.admin_url
                database_url = servers.postgres.url(DATABASE_NAME)
                embedded["DATABASE_URL"] = (f"embedded PostgreSQL {servers.postgres.version}, "
                                            f"port {servers.postgres.port}")
            if servers.redis is not None:
                redis_url = servers.redis.url
                embedded["REDIS_URL"] = (f"embedded Redis (Valkey {servers.redis.version}), "
                                         f"AOF on, port {servers.redis.port}")
        try:
            asyncio.run(_prepare_database(admin_url, database_url))
        except Exception as exc:  # OSError, and asyncpg's server errors (auth, no database)
            where = ("the embedded PostgreSQL (log: "
                     f"{servers.postgres.log_path})" if servers and servers.postgres
                     else "PostgreSQL at DATABASE_URL")
            origin = ("" if servers and servers.postgres
                      else f" (from {settings.origin('DATABASE_URL')})")
            raise DevStartError(f"cannot prepare {where}{origin}: {exc}") from exc
        os.environ["DATABASE_URL"] = database_url  # what the supervised processes inherit
        os.environ["REDIS_URL"] = redis_url
        console_token = dev_console_token(settings.console_token, data_dir)
        os.environ["MECOVE_CONSOLE_TOKEN"] = console_token  # the ingress serves /console
        master_key = dev_master_key(settings.master_key, data_dir)
        os.environ["MECOVE_MASTER_KEY"] = master_key  # content sealed, as in production
        settings = msgspec.structs.replace(settings, database_url=database_url,
                                           redis_url=redis_url, master_key=master_key)
        webhook = f"http://127.0.0.1:{settings.port}/webhooks/whatsapp"
        instance.publish(webhook=webhook, database_url=database_url, redis_url=redis_url)
        for line in banner(settings, data_dir, embedded):
            say(line)
        say(f"console       {console_link(settings.port, console_token)}")
        say(f"servers and migrations ready in {time.monotonic() - started:.1f}s; "
            "starting the service")
        return supervise(commands, settings, watch=servers.exited if servers else None)
    except KeyboardInterrupt:
        return 0
    except (DevStartError, ServerStartError, DataFolderBusy) as exc:
        print(f"mecove dev: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, _ignore)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, _ignore)
        if servers is not None:
            servers.stop()
            say(f"embedded servers stopped; data kept in {data_dir}")
        instance.release()
